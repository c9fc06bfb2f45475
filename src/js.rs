//! Building the JS values the page sees: events `{ name, data }`, `imResponse`, `imError`,
//! and the `TIM.EVENT` / `TIM.TYPES` tables. Plain `Object`s and `Reflect::set`: smaller than
//! going through serde for these few shapes.

use js_sys::{Object, Reflect};
use tim_proto::{
    KickReason, NetState, EVENT_ERROR, EVENT_KICKED_OUT, EVENT_NET_STATE_CHANGE,
    EVENT_SDK_NOT_READY, EVENT_SDK_READY,
};
use tim_session::{Event, OpOk, SdkError};
use wasm_bindgen::JsValue;

/// `{ k1: v1, k2: v2, ... }`.
pub fn object(fields: &[(&str, JsValue)]) -> Object {
    let obj = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&obj, &JsValue::from_str(k), v);
    }
    obj
}

pub fn str_map(pairs: &[(&str, &str)]) -> JsValue {
    let obj = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&obj, &JsValue::from_str(k), &JsValue::from_str(v));
    }
    Object::freeze(&obj).into()
}

/// An `imError`: a real `Error` (so it has a stack) carrying `code`.
pub fn error(e: &SdkError) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    let _ = Reflect::set(&err, &"code".into(), &JsValue::from(e.code));
    err.into()
}

/// An `imResponse`: `{ code: 0, data }`.
pub fn response(ok: &OpOk) -> JsValue {
    let data = match ok {
        OpOk::Login { repeat } => {
            let data = object(&[
                ("actionStatus", "OK".into()),
                ("errorCode", 0.into()),
                (
                    "errorInfo",
                    if *repeat {
                        "this user is already logged in on this instance"
                    } else {
                        ""
                    }
                    .into(),
                ),
            ]);
            if *repeat {
                let _ = Reflect::set(&data, &"repeatLogin".into(), &JsValue::TRUE);
            }
            data
        }
        OpOk::Logout | OpOk::Destroy => Object::new(),
    };
    object(&[("code", 0.into()), ("data", data.into())]).into()
}

/// The page-facing event for a session event: `(name, { name, data })`.
pub fn event(e: &Event) -> Option<(&'static str, JsValue)> {
    let (name, data): (&str, JsValue) = match e {
        Event::Ready => (EVENT_SDK_READY, JsValue::UNDEFINED),
        Event::NotReady => (EVENT_SDK_NOT_READY, JsValue::UNDEFINED),
        Event::Kicked(reason) => (EVENT_KICKED_OUT, kicked_data(*reason)),
        Event::NetState(state) => (EVENT_NET_STATE_CHANGE, net_state_data(*state)),
        Event::Error(e) => (
            EVENT_ERROR,
            object(&[
                ("code", e.code.into()),
                ("message", e.message.as_str().into()),
            ])
            .into(),
        ),
        Event::Done { .. } | Event::RenewUserSig => return None,
    };
    Some((
        name,
        object(&[("name", name.into()), ("data", data)]).into(),
    ))
}

fn kicked_data(reason: KickReason) -> JsValue {
    object(&[("type", reason.as_str().into())]).into()
}

fn net_state_data(state: NetState) -> JsValue {
    object(&[("state", state.as_str().into())]).into()
}
