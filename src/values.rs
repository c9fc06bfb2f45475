//! What the page gets back, written with serde-wasm-bindgen: events `{ name, data }`,
//! `imResponse`, `imError`, and the `TIM.EVENT` / `TIM.TYPES` tables.

use js_sys::Reflect;
use serde::Serialize;
use tim_proto::{
    KickReason, NetState, EVENT_ERROR, EVENT_KICKED_OUT, EVENT_NET_STATE_CHANGE, EVENT_SDK_DESTROY,
    EVENT_SDK_NOT_READY, EVENT_SDK_READY,
};
use tim_session::{Event, OpOk, SdkError};
use wasm_bindgen::JsValue;

/// Plain objects (not `Map`s) for maps, `undefined` for `None`: what pages expect.
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value.serialize(&serializer).unwrap_or(JsValue::UNDEFINED)
}

/// An `imError`: a real `Error` (so it has a stack) carrying `code`.
pub fn error(e: &SdkError) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    let _ = Reflect::set(&err, &"code".into(), &JsValue::from(e.code));
    err.into()
}

#[derive(Serialize)]
struct ImResponse<T> {
    code: u32,
    data: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginData {
    action_status: &'static str,
    error_code: u32,
    error_info: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat_login: Option<bool>,
}

#[derive(Serialize)]
struct Empty {}

/// An `imResponse`: `{ code: 0, data }`.
pub fn response(ok: &OpOk) -> JsValue {
    match ok {
        OpOk::Login { repeat } => to_js(&ImResponse {
            code: 0,
            data: LoginData {
                action_status: "OK",
                error_code: 0,
                error_info: if *repeat {
                    "this user is already logged in on this instance"
                } else {
                    ""
                },
                repeat_login: repeat.then_some(true),
            },
        }),
        OpOk::Logout | OpOk::Destroy => to_js(&ImResponse {
            code: 0,
            data: Empty {},
        }),
    }
}

/// The data of each page event.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    None,
    Kicked {
        #[serde(rename = "type")]
        kind: &'a str,
    },
    Net {
        state: &'a str,
    },
    Error {
        code: u32,
        message: &'a str,
    },
    Destroy {
        #[serde(rename = "SDKAppID")]
        sdkappid: u32,
    },
}

#[derive(Serialize)]
struct PageEvent<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "is_none")]
    data: Data<'a>,
}

fn is_none(data: &Data) -> bool {
    matches!(data, Data::None)
}

/// The page-facing event for a session event: `(name, { name, data })`. `sdkappid` is the
/// instance's, for `SDK_DESTROY`'s data.
pub fn event(e: &Event, sdkappid: u32) -> Option<(&'static str, JsValue)> {
    let (name, data) = match e {
        Event::Ready => (EVENT_SDK_READY, Data::None),
        Event::NotReady => (EVENT_SDK_NOT_READY, Data::None),
        Event::Kicked(reason) => (EVENT_KICKED_OUT, kicked(*reason)),
        Event::NetState(state) => (EVENT_NET_STATE_CHANGE, net(*state)),
        Event::Error(e) => (
            EVENT_ERROR,
            Data::Error {
                code: e.code,
                message: &e.message,
            },
        ),
        Event::Destroyed => (EVENT_SDK_DESTROY, Data::Destroy { sdkappid }),
        Event::Done { .. } | Event::RenewUserSig => return None,
    };
    Some((name, to_js(&PageEvent { name, data })))
}

fn kicked(reason: KickReason) -> Data<'static> {
    Data::Kicked {
        kind: reason.as_str(),
    }
}

fn net(state: NetState) -> Data<'static> {
    Data::Net {
        state: state.as_str(),
    }
}

/// `{ KEY: 'value', ... }`, frozen.
pub fn str_map(pairs: &[(&str, &str)]) -> JsValue {
    frozen(pairs.iter().map(|(k, v)| (*k, JsValue::from_str(v))))
}

/// `{ KEY: 2800, ... }`, frozen.
pub fn code_map(pairs: &[(&str, u32)]) -> JsValue {
    frozen(pairs.iter().map(|(k, v)| (*k, JsValue::from(*v))))
}

fn frozen<'a>(pairs: impl Iterator<Item = (&'a str, JsValue)>) -> JsValue {
    let obj = js_sys::Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&obj, &JsValue::from_str(k), &v);
    }
    js_sys::Object::freeze(&obj).into()
}
