//! The State.StateChange request exactly as Tencent sends it, so that an app server written
//! for Tencent works unchanged:
//!
//! `POST <url>?SdkAppid=<app>&CallbackCommand=State.StateChange&contenttype=json&ClientIP=<ip>&OptPlatform=<platform>`
//! plus, with a token, `&RequestTime=<unix s>&Sign=<hex sha256(token + RequestTime)>`, and
//! the JSON body of [`body`]. The answer counts as delivered only when it is HTTP 2xx with
//! `ErrorCode` 0 ([`accepted`]).

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{tencent_platform, StateChange, LOGIN};

pub const COMMAND: &str = "State.StateChange";

/// Tencent's callback authentication: hex `sha256(token + request_time)`.
pub fn sign(token: &str, request_time: u64) -> String {
    let digest = Sha256::digest(format!("{token}{request_time}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The query string appended to the callback URL (after `?`, or `&` if it has a query).
pub fn query(app: u32, event: &StateChange, token: Option<&str>, now_s: u64) -> String {
    let mut q = format!(
        "SdkAppid={app}&CallbackCommand={COMMAND}&contenttype=json&ClientIP={}&OptPlatform={}",
        encode(&event.ip),
        encode(tencent_platform(&event.op)),
    );
    if let Some(token) = token {
        q.push_str(&format!("&RequestTime={now_s}&Sign={}", sign(token, now_s)));
    }
    q
}

/// The body: `CallbackCommand`, `EventTime` (ms), `Info{Action, To_Account, Reason}`,
/// `KickedDevice` (a login's) and `EventID` (unique per event: receivers drop duplicates).
pub fn body(event: &StateChange, event_id: &str) -> Vec<u8> {
    let mut v = json!({
        "CallbackCommand": COMMAND,
        "EventTime": event.t,
        "Info": {
            "Action": event.a,
            "To_Account": event.u,
            "Reason": event.r,
        },
        "EventID": event_id,
    });
    if event.a == LOGIN {
        v["KickedDevice"] = event
            .k
            .iter()
            .map(|p| json!({ "Platform": tencent_platform(p) }))
            .collect();
    }
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

/// Why an answer is not an acceptance.
pub fn accepted(status: u16, body: &[u8]) -> Result<(), &'static str> {
    if !(200..300).contains(&status) {
        return Err("status");
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| "bad_answer")?;
    match v.get("ErrorCode").and_then(|c| c.as_i64()) {
        Some(0) => Ok(()),
        Some(_) => Err("error_code"),
        None => Err("bad_answer"),
    }
}

/// Percent-encodes what is not unreserved (addresses and platform names rarely need it).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> StateChange {
        StateChange {
            id: String::new(),
            u: "alice".into(),
            a: "Login".into(),
            r: "Register".into(),
            p: "iPhone".into(),
            ip: "10.1.2.3".into(),
            op: "iPhone".into(),
            t: 1_700_000_000_123,
            k: vec!["Web".into(), "iPhone".into()],
        }
    }

    #[test]
    fn sign_is_hex_sha256_of_token_and_time() {
        // sha256("abc1700000000"), computed independently (sha256sum).
        assert_eq!(
            sign("abc", 1_700_000_000),
            "139d720ab3fe33252a099243519e7548ce791f035b647c70bc13e8a12f503cda"
        );
        assert_eq!(sign("abc", 1_700_000_000).len(), 64);
        assert_ne!(sign("abc", 1), sign("abd", 1));
    }

    #[test]
    fn query_and_body_in_tencents_shape() {
        let q = query(1400000001, &event(), Some("tok"), 1_700_000_000);
        assert!(q.starts_with(
            "SdkAppid=1400000001&CallbackCommand=State.StateChange&contenttype=json&ClientIP=10.1.2.3&OptPlatform=iOS&RequestTime=1700000000&Sign="
        ), "{q}");
        assert!(q.ends_with(&sign("tok", 1_700_000_000)));
        assert!(!query(1, &event(), None, 1).contains("Sign"));
        let b: serde_json::Value = serde_json::from_slice(&body(&event(), "7-1")).unwrap();
        assert_eq!(b["CallbackCommand"], "State.StateChange");
        assert_eq!(b["EventTime"], 1_700_000_000_123u64);
        assert_eq!(b["Info"]["Action"], "Login");
        assert_eq!(b["Info"]["To_Account"], "alice");
        assert_eq!(b["Info"]["Reason"], "Register");
        assert_eq!(b["KickedDevice"][0]["Platform"], "Web");
        assert_eq!(b["KickedDevice"][1]["Platform"], "iOS");
        assert_eq!(b["EventID"], "7-1");
        let logout = StateChange {
            a: "Logout".into(),
            r: "Unregister".into(),
            ..event()
        };
        let b: serde_json::Value = serde_json::from_slice(&body(&logout, "7-2")).unwrap();
        assert!(b.get("KickedDevice").is_none());
    }

    #[test]
    fn only_2xx_with_error_code_0_is_accepted() {
        let ok = br#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;
        assert_eq!(accepted(200, ok), Ok(()));
        assert_eq!(accepted(500, ok), Err("status"));
        assert_eq!(accepted(302, ok), Err("status"));
        assert_eq!(accepted(200, br#"{"ErrorCode":1}"#), Err("error_code"));
        assert_eq!(accepted(200, b"OK"), Err("bad_answer"));
        assert_eq!(accepted(200, b"{}"), Err("bad_answer"));
    }
}
