//! tim-wasm: the browser SDK. A thin driver around the sans-IO session core
//! (`tim-session`): it owns the WebSocket, the one timer and the page's listeners, and turns
//! the core's events into `tim-js-sdk`-shaped events and Promise results.
//!
//! Module map: `tim` (the exported `TIM` class and its per-SDKAppID cache), `options` (what
//! the page passes in), `values` (what the page gets back), `driver` (pumps the core),
//! `renewal` (asks the page's `getUserSig`), `socket` (RAII WebSocket), `instance` (this
//! tab's id), `page_events` (online / offline / visible), `listeners` (`on`/`once`/`off`),
//! `wire` (frames as JSON), `clock`, `log`.

mod clock;
mod driver;
mod instance;
mod listeners;
mod log;
mod options;
mod page_events;
mod renewal;
mod socket;
mod tim;
mod values;
mod wire;

// SAFETY: wasm32-unknown-unknown without threads: the page's one thread is the only user.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub use tim::{tim_constants, TIM};
