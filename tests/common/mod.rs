//! Shared by the browser tests: the live `timd`s that scripts/test.sh starts (addresses and
//! app from the build environment), UserSigs for them, and small JS helpers. Instances are
//! driven through their JS methods ([`Tim`]), as pages drive them; [`Frame`] gives a test
//! another page's worth of SDK (its own wasm instance), for several instances of one app.
#![allow(dead_code, unused_imports)]

mod frame;
mod recorder;
mod tim;

pub use frame::Frame;
pub use recorder::{Recorder, ALL_EVENTS};
pub use tim::Tim;

use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// The default login settings (one Web instance, `dual`).
pub const URL: &str = match option_env!("TIMD_TEST_URL") {
    Some(u) => u,
    None => "ws://127.0.0.1:19000",
};
/// `--web-instances 2 --login-policy single`: the seed's scenario.
pub const URL_MULTI: &str = match option_env!("TIMD_TEST_URL_MULTI") {
    Some(u) => u,
    None => "ws://127.0.0.1:19001",
};
pub const KEY: &str = match option_env!("TIMD_TEST_KEY") {
    Some(k) => k,
    None => "tim-wasm-test-key-0123456789abcdef",
};
pub const APP: u32 = 1_400_012_345;

#[wasm_bindgen(inline_js = "
export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
export function nowSecs() { return Math.floor(Date.now() / 1000); }
")]
extern "C" {
    fn sleep(ms: u32) -> Promise;
    #[wasm_bindgen(js_name = nowSecs)]
    fn now_secs() -> f64;
}

/// `{ k1: v1, ... }`.
pub fn obj(fields: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

/// `v.a.b.c` for the path `"a.b.c"` (undefined where missing).
pub fn get(v: &JsValue, path: &str) -> JsValue {
    path.split('.').fold(v.clone(), |v, k| {
        if v.is_object() || v.is_function() {
            Reflect::get(&v, &k.into()).unwrap_or(JsValue::UNDEFINED)
        } else {
            JsValue::UNDEFINED
        }
    })
}

/// The numeric `code` of an `imError`.
pub fn code(err: &JsValue) -> u32 {
    get(err, "code")
        .as_f64()
        .unwrap_or_else(|| panic!("the error carries a numeric code: {err:?}")) as u32
}

/// Unix seconds, from the browser's clock.
pub fn now() -> u64 {
    now_secs() as u64
}

/// Milliseconds since the epoch, from the browser's clock.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// A user name unique to this run, so tests never share server-side state.
pub fn user(tag: &str) -> String {
    format!("{tag}_{}", (js_sys::Math::random() * 1e9) as u64)
}

/// A UserSig for `user` from the test app, valid for an hour from now.
pub fn sig(user: &str) -> String {
    tim_usersig::generate(APP, KEY, user, now(), 3600)
}

/// A UserSig for `user` with `left` seconds of validity left.
pub fn sig_with(user: &str, left: u64) -> String {
    tim_usersig::generate(APP, KEY, user, now() + left - 3600, 3600)
}

pub async fn pause(ms: u32) {
    JsFuture::from(sleep(ms)).await.unwrap();
}

/// Polls `done` every 10 ms for at most `ms`; whether it became true.
pub async fn wait_until(ms: u32, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..ms.div_ceil(10) {
        if done() {
            return true;
        }
        pause(10).await;
    }
    done()
}
