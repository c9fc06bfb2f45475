//! Browser tests of the SDK against a live `timd` (started by scripts/test.sh), in headless
//! Chrome and Firefox: `wasm-pack test --headless --chrome --firefox`.
//!
//! The server's URL, SDKAppID and key come from the environment at build time
//! (`TIMD_TEST_URL`, `TIMD_TEST_SDKAPPID`, `TIMD_TEST_KEY`), with scripts/test.sh's defaults.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use base64::Engine;
use js_sys::Function;
use tim_wasm::{tim_constants, TIM};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

mod common;

use common::*;

wasm_bindgen_test_configure!(run_in_browser);

// A probe around the page's WebSocket and timers, to see what the SDK leaves alive.
#[wasm_bindgen(inline_js = r#"
export function installProbe() {
  if (globalThis.__timProbe) return;
  const probe = { sockets: [], timers: new Set() };
  const OrigWS = globalThis.WebSocket;
  globalThis.WebSocket = class extends OrigWS {
    constructor(...args) { super(...args); probe.sockets.push(this); }
  };
  const st = globalThis.setTimeout.bind(globalThis);
  const ct = globalThis.clearTimeout.bind(globalThis);
  globalThis.setTimeout = (fn, ms, ...rest) => {
    const id = st((...x) => { probe.timers.delete(id); fn(...x); }, ms, ...rest);
    probe.timers.add(id);
    return id;
  };
  globalThis.clearTimeout = (id) => { probe.timers.delete(id); ct(id); };
  globalThis.__timProbe = probe;
}
export function probeReset() { __timProbe.sockets.length = 0; __timProbe.timers.clear(); }
export function socketsCreated() { return __timProbe.sockets.length; }
export function socketsOpen() { return __timProbe.sockets.filter((s) => s.readyState < 2).length; }
export function socketsWithHandlers() {
  return __timProbe.sockets.filter((s) => s.onopen || s.onmessage || s.onclose || s.onerror).length;
}
export function pendingTimers() { return __timProbe.timers.size; }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = installProbe)]
    fn install_probe();
    #[wasm_bindgen(js_name = probeReset)]
    fn probe_reset();
    #[wasm_bindgen(js_name = socketsCreated)]
    fn sockets_created() -> u32;
    #[wasm_bindgen(js_name = socketsOpen)]
    fn sockets_open() -> u32;
    #[wasm_bindgen(js_name = socketsWithHandlers)]
    fn sockets_with_handlers() -> u32;
    #[wasm_bindgen(js_name = pendingTimers)]
    fn pending_timers() -> u32;
}

fn create() -> TIM {
    create_with(APP)
}

fn create_with(app: u32) -> TIM {
    install_probe();
    TIM::create(obj(&[("SDKAppID", app.into()), ("serverURL", URL.into())]))
}

async fn login(tim: &TIM, user: &str, usersig: &str) -> Result<JsValue, JsValue> {
    JsFuture::from(tim.login(obj(&[("userID", user.into()), ("userSig", usersig.into())]))).await
}

fn code(err: &JsValue) -> u32 {
    get(err, "code")
        .as_f64()
        .expect("the error carries a numeric code") as u32
}

/// Records every event the SDK emits, with its `name` and `data`.
struct Recorder {
    seen: Rc<RefCell<Vec<JsValue>>>,
    handler: Closure<dyn FnMut(JsValue)>,
}

const ALL_EVENTS: [&str; 5] = [
    "sdkStateReady",
    "sdkStateNotReady",
    "kickedOut",
    "netStateChange",
    "error",
];

impl Recorder {
    fn on(tim: &TIM) -> Recorder {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let handler = Closure::new(move |e: JsValue| sink.borrow_mut().push(e));
        let r = Recorder { seen, handler };
        for name in ALL_EVENTS {
            tim.on(name, r.function(), JsValue::UNDEFINED);
        }
        r
    }
    fn function(&self) -> Function {
        self.handler.as_ref().unchecked_ref::<Function>().clone()
    }
    /// `name` or `name:detail` (kicked-out type / net state) of each event, in order.
    fn names(&self) -> Vec<String> {
        self.seen
            .borrow()
            .iter()
            .map(|e| {
                let name = get(e, "name").as_string().unwrap();
                let detail = get(e, "data.type")
                    .as_string()
                    .or(get(e, "data.state").as_string());
                match detail {
                    Some(d) => format!("{name}:{d}"),
                    None => name,
                }
            })
            .collect()
    }
}

/// Exactly the values of `shared/REFERENCE.md`, written out here so drift fails.
#[wasm_bindgen_test]
fn constants_match_reference() {
    let c = tim_constants();
    for (k, v) in [
        ("EVENT.SDK_READY", "sdkStateReady"),
        ("EVENT.SDK_NOT_READY", "sdkStateNotReady"),
        ("EVENT.KICKED_OUT", "kickedOut"),
        ("EVENT.NET_STATE_CHANGE", "netStateChange"),
        ("EVENT.ERROR", "error"),
        ("TYPES.KICKED_OUT_MULT_ACCOUNT", "multipleAccount"),
        ("TYPES.KICKED_OUT_MULT_DEVICE", "multipleDevice"),
        ("TYPES.KICKED_OUT_USERSIG_EXPIRED", "userSigExpired"),
        ("TYPES.KICKED_OUT_REST_API", "REST_API_Kick"),
        ("TYPES.NET_STATE_CONNECTED", "connected"),
        ("TYPES.NET_STATE_CONNECTING", "connecting"),
        ("TYPES.NET_STATE_DISCONNECTED", "disconnected"),
    ] {
        assert_eq!(get(&c, k).as_string().as_deref(), Some(v), "{k}");
    }
}

#[wasm_bindgen_test]
async fn login_reaches_sdk_ready() {
    let tim = create();
    let rec = Recorder::on(&tim);
    let u = user("ready");
    assert_eq!(tim.get_login_user(), "");
    let res = login(&tim, &u, &sig(&u)).await.expect("login resolves");
    assert_eq!(get(&res, "code").as_f64(), Some(0.0));
    assert_eq!(
        get(&res, "data.actionStatus").as_string().as_deref(),
        Some("OK")
    );
    assert_eq!(get(&res, "data.errorCode").as_f64(), Some(0.0));
    assert_eq!(get(&res, "data.errorInfo").as_string().as_deref(), Some(""));
    assert!(get(&res, "data.repeatLogin").is_undefined());
    assert_eq!(
        rec.names(),
        [
            "netStateChange:connecting",
            "netStateChange:connected",
            "sdkStateReady"
        ]
    );
    assert_eq!(
        get(&rec.seen.borrow()[2], "name").as_string().as_deref(),
        Some("sdkStateReady")
    );
    assert!(tim.is_ready());
    assert_eq!(tim.get_login_user(), u);
    JsFuture::from(tim.destroy()).await.unwrap();
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_")
}

fn zlib_b64url(bytes: &[u8]) -> String {
    b64url(&miniz_oxide::deflate::compress_to_vec_zlib(bytes, 9))
}

/// Every bad UserSig fails the login with its own documented code.
#[wasm_bindgen_test]
async fn bad_usersigs_fail_with_their_codes() {
    let t = now();
    let doc_without = move |field: &str, u: &str| {
        let mut doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "TLS.ver": "2.0", "TLS.identifier": u, "TLS.sdkappid": APP,
                "TLS.time": t, "TLS.expire": 3600, "TLS.sig": "AAAA"
            }))
            .unwrap();
        doc.remove(field);
        zlib_b64url(serde_json::to_string(&doc).unwrap().as_bytes())
    };
    let tampered = |u: &str| {
        let good = sig(u);
        let claims = tim_usersig::decode(&good).unwrap();
        let doc = serde_json::json!({
            "TLS.ver": "2.0", "TLS.identifier": u, "TLS.sdkappid": APP, "TLS.time": claims.time,
            "TLS.expire": claims.expire, "TLS.sig": b64url(&[7u8; 32]).replace('*', "+").replace('-', "/").replace('_', "=")
        });
        zlib_b64url(doc.to_string().as_bytes())
    };
    type Make = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(&str, Make, u32)> = vec![
        ("not base64", Box::new(|_| "!!!not-base64!!!".into()), 70003),
        (
            "not zlib",
            Box::new(|_| b64url(b"definitely not zlib data")),
            70003,
        ),
        (
            "zlib bomb",
            Box::new(|_| zlib_b64url(&vec![b' '; 1 << 20])),
            70003,
        ),
        (
            "not json",
            Box::new(|_| zlib_b64url(b"hello, not json")),
            70003,
        ),
        (
            "missing TLS.sig",
            Box::new(move |u| doc_without("TLS.sig", u)),
            70003,
        ),
        (
            "missing TLS.time",
            Box::new(move |u| doc_without("TLS.time", u)),
            70003,
        ),
        ("tampered signature", Box::new(tampered), 70009),
        (
            "wrong key",
            Box::new(move |u| tim_usersig::generate(APP, "another-key", u, t, 3600)),
            70009,
        ),
        (
            "another identifier",
            Box::new(move |_| tim_usersig::generate(APP, KEY, "somebody_else", t, 3600)),
            70013,
        ),
        (
            "another SDKAppID",
            Box::new(move |u| tim_usersig::generate(APP + 1, KEY, u, t, 3600)),
            70014,
        ),
        (
            "expired",
            Box::new(move |u| tim_usersig::generate(APP, KEY, u, t - 7200, 3600)),
            70001,
        ),
    ];
    for (what, make, want) in cases {
        let tim = create();
        let rec = Recorder::on(&tim);
        let u = user("bad");
        let err = login(&tim, &u, &make(&u)).await.expect_err(what);
        assert_eq!(
            code(&err),
            want,
            "{what}: {:?}",
            get(&err, "message").as_string()
        );
        assert!(
            !get(&err, "message").as_string().unwrap().is_empty(),
            "{what} has a message"
        );
        assert!(!tim.is_ready(), "{what}");
        assert!(!rec.names().iter().any(|n| n == "sdkStateReady"), "{what}");
        JsFuture::from(tim.destroy()).await.unwrap();
    }
    // An SDKAppID the server does not serve.
    let tim = create_with(APP + 7);
    let u = user("app");
    let err = login(&tim, &u, &tim_usersig::generate(APP + 7, KEY, &u, t, 3600))
        .await
        .unwrap_err();
    assert_eq!(code(&err), 70020);
    JsFuture::from(tim.destroy()).await.unwrap();
}

/// Client-side checks answer before any socket is opened.
#[wasm_bindgen_test]
async fn bad_arguments_fail_before_any_network_use() {
    install_probe();
    probe_reset();
    let no_app = TIM::create(obj(&[("serverURL", URL.into())]));
    assert_eq!(
        code(&login(&no_app, "alice", "sig").await.unwrap_err()),
        2000
    );
    let tim = create();
    assert_eq!(code(&login(&tim, "", "sig").await.unwrap_err()), 2002);
    assert_eq!(
        code(&login(&tim, "not valid!", "sig").await.unwrap_err()),
        2002
    );
    assert_eq!(
        code(&login(&tim, &"x".repeat(33), "sig").await.unwrap_err()),
        2002
    );
    assert_eq!(code(&login(&tim, "alice", "").await.unwrap_err()), 2003);
    let missing = JsFuture::from(tim.login(obj(&[]))).await.unwrap_err();
    assert_eq!(code(&missing), 2002);
    assert_eq!(
        sockets_created(),
        0,
        "no socket for a call that cannot succeed"
    );
    JsFuture::from(tim.destroy()).await.unwrap();
    JsFuture::from(no_app.destroy()).await.unwrap();
}

#[wasm_bindgen_test]
async fn logout_ends_the_session() {
    let tim = create();
    let u = user("logout");
    login(&tim, &u, &sig(&u)).await.unwrap();
    let rec = Recorder::on(&tim);
    let res = JsFuture::from(tim.logout()).await.expect("logout resolves");
    assert_eq!(get(&res, "code").as_f64(), Some(0.0));
    assert_eq!(rec.names(), ["sdkStateNotReady"]);
    assert!(!tim.is_ready());
    assert_eq!(tim.get_login_user(), "");
    let again = JsFuture::from(tim.logout()).await.unwrap_err();
    assert_eq!(code(&again), 2024);
    // The instance can log in again afterwards.
    login(&tim, &u, &sig(&u)).await.expect("login after logout");
    assert!(tim.is_ready());
    JsFuture::from(tim.destroy()).await.unwrap();
}

#[wasm_bindgen_test]
async fn same_user_again_resolves_with_repeat_login() {
    let tim = create();
    let u = user("repeat");
    login(&tim, &u, &sig(&u)).await.unwrap();
    install_probe();
    probe_reset();
    let res = login(&tim, &u, &sig(&u))
        .await
        .expect("repeat login resolves");
    assert_eq!(get(&res, "data.repeatLogin"), JsValue::TRUE);
    assert!(!get(&res, "data.errorInfo").as_string().unwrap().is_empty());
    assert_eq!(sockets_created(), 0);
    assert!(tim.is_ready());
    JsFuture::from(tim.destroy()).await.unwrap();
}

#[wasm_bindgen_test]
async fn login_while_logging_in_is_repeat_login_2025() {
    let tim = create();
    let u = user("racing");
    let first = tim.login(obj(&[
        ("userID", u.as_str().into()),
        ("userSig", sig(&u).into()),
    ]));
    let second = login(&tim, &u, &sig(&u)).await.unwrap_err();
    assert_eq!(code(&second), 2025);
    JsFuture::from(first)
        .await
        .expect("the first login still succeeds");
    assert!(tim.is_ready());
    JsFuture::from(tim.destroy()).await.unwrap();
}

#[wasm_bindgen_test]
async fn another_user_switches_accounts() {
    let tim = create();
    let (a, b) = (user("alice"), user("bob"));
    login(&tim, &a, &sig(&a)).await.unwrap();
    let rec = Recorder::on(&tim);
    login(&tim, &b, &sig(&b))
        .await
        .expect("switching accounts resolves");
    assert_eq!(tim.get_login_user(), b);
    assert_eq!(rec.names(), ["sdkStateNotReady", "sdkStateReady"]);
    JsFuture::from(tim.destroy()).await.unwrap();
}

#[wasm_bindgen_test]
async fn off_really_removes_a_handler() {
    let tim = create();
    let removed = Recorder::on(&tim);
    let kept = Recorder::on(&tim);
    for name in ALL_EVENTS {
        tim.off(name, removed.function(), JsValue::UNDEFINED);
    }
    let u = user("off");
    login(&tim, &u, &sig(&u)).await.unwrap();
    assert_eq!(removed.names(), Vec::<String>::new());
    assert!(kept.names().contains(&"sdkStateReady".to_string()));
    JsFuture::from(tim.destroy()).await.unwrap();
}

#[wasm_bindgen_test]
async fn destroy_releases_everything_and_later_calls_reject_2905() {
    install_probe();
    probe_reset();
    let tim = create();
    let rec = Recorder::on(&tim);
    let u = user("destroy");
    login(&tim, &u, &sig(&u)).await.unwrap();
    assert_eq!(sockets_open(), 1);
    assert!(
        pending_timers() >= 1,
        "the heartbeat timer is armed while online"
    );
    let res = JsFuture::from(tim.destroy())
        .await
        .expect("destroy resolves");
    assert_eq!(get(&res, "code").as_f64(), Some(0.0));
    assert!(rec.names().ends_with(&["sdkStateNotReady".to_string()]));
    pause(50).await;
    assert_eq!(sockets_open(), 0, "the socket is closed");
    assert_eq!(sockets_with_handlers(), 0, "no handler left on any socket");
    assert_eq!(pending_timers(), 0, "no timer left");
    let before = rec.names().len();
    for p in [
        tim.login(obj(&[
            ("userID", u.as_str().into()),
            ("userSig", sig(&u).into()),
        ])),
        tim.logout(),
        tim.destroy(),
    ] {
        assert_eq!(code(&JsFuture::from(p).await.unwrap_err()), 2905);
    }
    tim.on("sdkStateReady", rec.function(), JsValue::UNDEFINED);
    assert_eq!(rec.names().len(), before, "no event after destroy");
    assert!(!tim.is_ready());
    assert_eq!(tim.get_login_user(), "");
}

#[wasm_bindgen_test]
async fn destroy_during_login_settles_the_login() {
    let tim = create();
    let u = user("midway");
    let pending = tim.login(obj(&[
        ("userID", u.as_str().into()),
        ("userSig", sig(&u).into()),
    ]));
    JsFuture::from(tim.destroy()).await.unwrap();
    assert_eq!(code(&JsFuture::from(pending).await.unwrap_err()), 2905);
}

#[wasm_bindgen_test]
async fn unreachable_server_rejects_with_network_error() {
    install_probe();
    let tim = TIM::create(obj(&[
        ("SDKAppID", APP.into()),
        ("serverURL", "ws://127.0.0.1:9".into()),
    ]));
    let rec = Recorder::on(&tim);
    let u = user("nowhere");
    assert_eq!(code(&login(&tim, &u, &sig(&u)).await.unwrap_err()), 2800);
    assert_eq!(
        rec.names(),
        ["netStateChange:connecting", "netStateChange:disconnected"]
    );
    let bad = TIM::create(obj(&[
        ("SDKAppID", APP.into()),
        ("serverURL", "not a url".into()),
    ]));
    assert_eq!(code(&login(&bad, &u, &sig(&u)).await.unwrap_err()), 2800);
    JsFuture::from(tim.destroy()).await.unwrap();
    JsFuture::from(bad.destroy()).await.unwrap();
}

/// `destroy()` from inside an event handler (the SDK is mid-dispatch) still logs out first
/// and still tells the other handlers `SDK_NOT_READY`.
#[wasm_bindgen_test]
async fn destroy_from_an_event_handler_still_logs_out() {
    install_probe();
    probe_reset();
    let tim = Rc::new(create());
    let rec = Recorder::on(&tim);
    let me = tim.clone();
    let destroy_on_ready = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let _ = me.destroy();
    });
    tim.on(
        "sdkStateReady",
        destroy_on_ready
            .as_ref()
            .unchecked_ref::<Function>()
            .clone(),
        JsValue::UNDEFINED,
    );
    let u = user("selfdestruct");
    login(&tim, &u, &sig(&u)).await.unwrap();
    pause(50).await;
    assert!(
        rec.names().ends_with(&["sdkStateNotReady".to_string()]),
        "{:?}",
        rec.names()
    );
    assert_eq!(sockets_open(), 0);
    assert_eq!(sockets_with_handlers(), 0);
    assert_eq!(pending_timers(), 0);
    assert_eq!(code(&login(&tim, &u, &sig(&u)).await.unwrap_err()), 2905);
}
