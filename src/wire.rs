//! Frames to and from JSON text with the browser's own `JSON` (no JSON parser in the wasm).
//!
//! Out: `tim_proto`'s serde types through serde-wasm-bindgen, so the SDK writes exactly
//! what the server reads. In: read by hand with `Reflect`: serde's derived visitors for the
//! server's eight frame shapes cost ~7 KB of wasm, and any deserialization through serde
//! links its float-formatting error messages. The browser test `decode_matches_serde`
//! checks the hand reader against serde_json both ways, so the shapes cannot drift.

use js_sys::{Reflect, JSON};
use tim_proto::{ClientFrame, ErrorFrame, KickReason, LoginOk, ServerFrame};
use wasm_bindgen::JsValue;

use crate::values::to_js;

pub fn encode(frame: &ClientFrame) -> Option<String> {
    JSON::stringify(&to_js(frame)).ok()?.as_string()
}

pub fn decode(text: &str) -> Option<ServerFrame> {
    let value = JSON::parse(text).ok()?;
    match value.as_string().as_deref() {
        // The server's heartbeat: the session answers it at once (`pong`).
        Some("ping") => return Some(ServerFrame::Ping),
        Some("pong") => return Some(ServerFrame::Pong),
        _ => {}
    }
    if let Some(v) = field(&value, "login_ok") {
        return Some(ServerFrame::LoginOk(LoginOk {
            seq: u32_of(&v, "seq")?,
            ticket: field(&v, "ticket")?.as_string()?,
            heartbeat_ms: u32_of(&v, "heartbeat_ms")?,
            expire_at: uint(&v, "expire_at")?,
            expires_in: uint(&v, "expires_in")?,
        }));
    }
    if let Some(v) = field(&value, "resume_ok") {
        return Some(ServerFrame::ResumeOk {
            seq: u32_of(&v, "seq")?,
            heartbeat_ms: u32_of(&v, "heartbeat_ms")?,
            expire_at: uint(&v, "expire_at")?,
            expires_in: uint(&v, "expires_in")?,
        });
    }
    if let Some(v) = field(&value, "renew_ok") {
        return Some(ServerFrame::RenewOk {
            seq: u32_of(&v, "seq")?,
            ticket: field(&v, "ticket")?.as_string()?,
            expire_at: uint(&v, "expire_at")?,
            expires_in: uint(&v, "expires_in")?,
        });
    }
    if let Some(v) = field(&value, "logout_ok") {
        return Some(ServerFrame::LogoutOk {
            seq: u32_of(&v, "seq")?,
        });
    }
    if let Some(v) = field(&value, "error") {
        return Some(ServerFrame::Error(ErrorFrame {
            seq: field(&v, "seq").and_then(|_| u32_of(&v, "seq")),
            code: u32_of(&v, "code")?,
            message: field(&v, "message")?.as_string()?,
        }));
    }
    if let Some(v) = field(&value, "kicked") {
        let reason = field(&v, "reason")?.as_string()?;
        let reason = [
            KickReason::MultipleAccount,
            KickReason::MultipleDevice,
            KickReason::UserSigExpired,
            KickReason::RestApi,
        ]
        .into_iter()
        .find(|r| r.as_str() == reason)?;
        return Some(ServerFrame::Kicked { reason });
    }
    None
}

/// `obj[key]`, when `obj` is an object and the value is neither `undefined` nor `null`.
fn field(obj: &JsValue, key: &str) -> Option<JsValue> {
    if !obj.is_object() {
        return None;
    }
    let v = Reflect::get(obj, &JsValue::from_str(key)).ok()?;
    (!v.is_undefined() && !v.is_null()).then_some(v)
}

/// A non-negative integer no larger than 2^53 (JSON numbers are doubles).
fn uint(obj: &JsValue, key: &str) -> Option<u64> {
    let n = field(obj, key)?.as_f64()?;
    // Whole numbers only: the round trip through u64 is exact exactly for those.
    ((0.0..=9_007_199_254_740_992.0).contains(&n) && (n as u64) as f64 == n).then_some(n as u64)
}

fn u32_of(obj: &JsValue, key: &str) -> Option<u32> {
    u32::try_from(uint(obj, key)?).ok()
}

/// The browser path against serde_json's, both ways, in a real browser.
#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use tim_proto::{Login, Platform};
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    wasm_bindgen_test_configure!(run_in_browser);

    #[wasm_bindgen_test]
    fn encode_matches_serde() {
        let frames = [
            ClientFrame::Ping,
            ClientFrame::Pong,
            ClientFrame::Logout { seq: 7 },
            ClientFrame::Resume {
                seq: 8,
                ticket: "abc.def".into(),
            },
            ClientFrame::Renew {
                seq: 9,
                usersig: "eJy*-_".into(),
            },
            ClientFrame::Login(Login {
                seq: 4_000_000_000,
                sdkappid: 1_400_000_000,
                user: "user_01-A".into(),
                usersig: "eJy\"quote\"*-_".into(),
                platform: Platform::Web,
                instance: "0123abcd".into(),
            }),
        ];
        for f in frames {
            let ours: serde_json::Value = serde_json::from_str(&encode(&f).unwrap()).unwrap();
            assert_eq!(ours, serde_json::to_value(&f).unwrap());
        }
    }

    #[wasm_bindgen_test]
    fn decode_matches_serde() {
        let frames = [
            ServerFrame::Pong,
            ServerFrame::Ping,
            ServerFrame::LogoutOk { seq: 3 },
            ServerFrame::ResumeOk {
                seq: 4,
                heartbeat_ms: 25_000,
                expire_at: 1_900_000_000,
                expires_in: 3_600,
            },
            ServerFrame::RenewOk {
                seq: 5,
                ticket: "t2".into(),
                expire_at: 1_900_000_001,
                expires_in: 3_601,
            },
            ServerFrame::LoginOk(LoginOk {
                seq: 1,
                ticket: "t".into(),
                heartbeat_ms: 25_000,
                expire_at: 1_900_000_000,
                expires_in: 3_600,
            }),
            ServerFrame::Error(ErrorFrame {
                seq: Some(2),
                code: 70001,
                message: "m".into(),
            }),
            ServerFrame::Error(ErrorFrame {
                seq: None,
                code: 70402,
                message: "m".into(),
            }),
            ServerFrame::Kicked {
                reason: KickReason::MultipleAccount,
            },
            ServerFrame::Kicked {
                reason: KickReason::MultipleDevice,
            },
            ServerFrame::Kicked {
                reason: KickReason::UserSigExpired,
            },
            ServerFrame::Kicked {
                reason: KickReason::RestApi,
            },
        ];
        for f in frames {
            assert_eq!(decode(&serde_json::to_string(&f).unwrap()), Some(f));
        }
        for bad in [
            "",
            "{}",
            "null",
            "\"pang\"",
            r#"{"login_ok":{"seq":-1}}"#,
            r#"{"kicked":{"reason":"x"}}"#,
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
