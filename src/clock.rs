//! Monotonic milliseconds for the session core, and random instance ids.

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

/// A fresh 128-bit random id in hex, from `crypto.getRandomValues` (falls back to
/// `Math.random` where no Web Crypto exists).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok());
    let filled = crypto.is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !filled {
        for b in bytes.iter_mut() {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}
