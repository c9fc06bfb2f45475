//! What the page passes in: `TIM.create(options)` and `login(options)`.
//!
//! Read with `Reflect`, field by field, not with serde-wasm-bindgen's `from_value`: any
//! deserialization through it links serde's "invalid type: floating point …" messages and
//! with them Rust's float formatting, +22 KB gzipped of wasm measured in this SDK (more
//! than half the 40 KB budget) to read three fields. Values going out do use serde
//! (`values`).
//!
//! Lenient per field, as `tim-js-sdk` is: a field of the wrong type counts as missing, so
//! the call fails with that field's own documented code (2000 no SDKAppID, 2002 bad
//! userID, 2003 no userSig).

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `Number(value)`.
    #[wasm_bindgen(js_name = Number)]
    fn to_number(value: &JsValue) -> f64;
}

/// `TIM.create({ SDKAppID, serverURL?, getUserSig? })`.
pub struct CreateOptions {
    /// A number, or a numeric string (as `tim-js-sdk` accepts); 0 when missing or invalid.
    pub sdkappid: u32,
    pub server_url: Option<String>,
    /// The page's `getUserSig`, if it is a function.
    pub get_usersig: Option<Function>,
}

impl CreateOptions {
    pub fn from_js(options: &JsValue) -> CreateOptions {
        CreateOptions {
            sdkappid: app_id(&get(options, "SDKAppID")),
            server_url: get(options, "serverURL").as_string(),
            get_usersig: get(options, "getUserSig").dyn_into::<Function>().ok(),
        }
    }
}

/// `login({ userID, userSig })`; a missing or mistyped field reads as `""`.
pub struct LoginOptions {
    pub user: String,
    pub usersig: String,
}

impl LoginOptions {
    pub fn from_js(options: &JsValue) -> LoginOptions {
        LoginOptions {
            user: get(options, "userID").as_string().unwrap_or_default(),
            usersig: get(options, "userSig").as_string().unwrap_or_default(),
        }
    }
}

/// `obj[key]`, or `undefined` when `obj` is not an object (or the getter throws).
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// An SDKAppID as `tim-js-sdk` reads one: a number, or a string that `Number()` reads as a
/// number (`'1400000000'`, `' 1400000000 '`), its integer part; 0 (login then fails with
/// 2000) for anything else or anything outside 1..=u32::MAX.
fn app_id(value: &JsValue) -> u32 {
    let n = if value.as_string().is_some() {
        // JS's own Number(): no float parsing compiled into the wasm.
        to_number(value)
    } else {
        value.as_f64().unwrap_or(f64::NAN)
    };
    let n = n.trunc();
    if n >= 1.0 && n <= f64::from(u32::MAX) {
        n as u32
    } else {
        0
    }
}
