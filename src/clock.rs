//! Monotonic milliseconds for the session core, and a seed for its jitter.

use wasm_bindgen::JsCast;

/// `performance.now()` where there is one (pages, workers), else `Date.now()`.
pub fn now_ms() -> u64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok());
    match perf {
        Some(p) => p.now() as u64,
        None => js_sys::Date::now() as u64,
    }
}

/// 64 random bits for the reconnect jitter (not security sensitive: `Math.random` will do).
pub fn random_seed() -> u64 {
    let hi = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    let lo = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    (hi << 32) | lo
}
