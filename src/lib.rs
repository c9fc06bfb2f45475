//! tim-wasm: the browser SDK. A thin driver around the sans-IO session core
//! (`tim-session`): it owns the WebSocket, the one timer and the page's listeners, and turns
//! the core's events into `tim-js-sdk`-shaped events and Promise results.
//!
//! Module map: `tim` (the exported `TIM` class), `driver` (pumps the core), `socket` (RAII
//! WebSocket), `instance` (this tab's id), `page_events` (online / offline / visible), `listeners` (`on`/`off`), `js` (building JS values), `wire` (frames as JSON), `clock`, `log`.

#![cfg_attr(not(feature = "std"), no_std)]
extern crate alloc;

mod clock;
mod driver;
mod instance;
mod js;
mod listeners;
mod log;
mod page_events;
mod socket;
mod tim;
mod timer;
mod wire;

// SAFETY: wasm32-unknown-unknown without threads: the page's one thread is the only user.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

/// Without `std` (the published build) a panic just traps: no message formatting machinery
/// in the wasm. Panics are bugs; the tests run with `std` and its messages.
#[cfg(all(not(feature = "std"), target_arch = "wasm32"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

pub use tim::{tim_constants, TIM};
