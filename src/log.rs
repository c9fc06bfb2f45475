//! `setLogLevel(0..4)`: 0 logs everything, 4 nothing (as in `tim-js-sdk`).

use std::sync::atomic::{AtomicU8, Ordering};

/// The page-wide log level (an atomic only to be a plain `static`: one thread).
static LEVEL: AtomicU8 = AtomicU8::new(1);

pub const DEBUG: u8 = 0;
pub const INFO: u8 = 1;
pub const WARN: u8 = 2;
pub const ERROR: u8 = 3;

pub fn set_level(level: u8) {
    LEVEL.store(level.min(4), Ordering::Relaxed);
}

pub fn log(level: u8, message: &str) {
    if level < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let text = wasm_bindgen::JsValue::from_str(&["TIM ", message].concat());
    match level {
        DEBUG | INFO => web_sys::console::log_1(&text),
        WARN => web_sys::console::warn_1(&text),
        _ => web_sys::console::error_1(&text),
    }
}
