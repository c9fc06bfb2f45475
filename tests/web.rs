//! Browser tests of the SDK against a live `timd` (started by scripts/test.sh), in headless
//! Chrome and Firefox: `wasm-pack test --headless --chrome --firefox`. Instances are driven
//! through their JS methods, as pages drive them (`common::Tim`).
//!
//! The server's URL and key come from the environment at build time (`TIMD_TEST_URL`,
//! `TIMD_TEST_KEY`), with scripts/test.sh's defaults.
#![cfg(target_arch = "wasm32")]

use base64::Engine;
use js_sys::Function;
use tim_wasm::tim_constants;
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
// Drops the latest connection under the SDK, as a network loss would.
export function dropLastSocket() {
  __timProbe.sockets[__timProbe.sockets.length - 1].close(4999, 'test drops the connection');
}

// Counts the page's setTimeout calls from now until the returned function is called (which
// restores setTimeout and answers the count). gloo-timers looks setTimeout up at each call.
// WebKitWebDriver runs each script command (the runner polls 10 times a second) through the
// page's own setTimeout, for its time limit: those calls are not the SDK's.
export function countTimeouts() {
  const inner = globalThis.setTimeout;
  let calls = 0;
  globalThis.setTimeout = function (...args) {
    if (!/evaluateJavaScriptFunction/.test(new Error().stack)) calls++;
    return inner.apply(this, args);
  };
  return () => { globalThis.setTimeout = inner; return calls; };
}
export function dispatchWindowEvent(name) { window.dispatchEvent(new Event(name)); }

// A handler that records the `this` and the event of each call.
export function thisRecorder() {
  const calls = [];
  const handler = function (event) { calls.push({ self: this, event }); };
  return { handler, calls };
}
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
    #[wasm_bindgen(js_name = dropLastSocket)]
    fn drop_last_socket();
    #[wasm_bindgen(js_name = countTimeouts)]
    fn count_timeouts() -> Function;
    #[wasm_bindgen(js_name = dispatchWindowEvent)]
    fn dispatch_window_event(name: &str);
    #[wasm_bindgen(js_name = thisRecorder)]
    fn this_recorder() -> JsValue;
}

/// A new instance of this page's SDK (see `Tim::fresh`), with the probe installed.
async fn create() -> Tim {
    create_with(APP).await
}

async fn create_with(app: u32) -> Tim {
    install_probe();
    Tim::fresh(&options(app)).await
}

/// `{ SDKAppID: app, serverURL: URL }`.
fn options(app: u32) -> JsValue {
    obj(&[("SDKAppID", app.into()), ("serverURL", URL.into())])
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
        ("EVENT.SDK_DESTROY", "sdkDestroy"),
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
    // The SDK's error codes by name (README "Errors"): tim-js-sdk's where it has them, then
    // the refusals (28xx, the close code's last two digits).
    for (k, v) in [
        ("NO_SDKAPPID", 2000),
        ("NO_IDENTIFIER", 2002),
        ("NO_USERSIG", 2003),
        ("USER_NOT_LOGGED_IN", 2024),
        ("REPEAT_LOGIN", 2025),
        ("NETWORK_ERROR", 2800),
        ("NETWORK_TIMEOUT", 2801),
        ("NO_NETWORK", 2805),
        ("ORIGIN_NOT_ALLOWED", 2806),
        ("SERVER_FULL", 2807),
        ("TOO_MANY_CONNECTIONS", 2808),
        ("CONNECTING_TOO_FAST", 2809),
        ("LOGIN_TOO_FAST", 2810),
        ("SERVER_UNAVAILABLE", 2813),
        ("UNCAUGHT_ERROR", 2903),
        ("INVALID_OPERATION", 2905),
        ("KICKED_OUT_MULT_DEVICE", 3002),
        ("KICKED_OUT_MULT_ACCOUNT", 3003),
        ("KICKED_OUT_USERSIG_EXPIRED", 3004),
        ("LOGGED_OUT", 3005),
        ("KICKED_OUT_REST_API", 3006),
    ] {
        let key = ["ERROR_CODE.", k].concat();
        assert_eq!(get(&c, &key).as_f64(), Some(f64::from(v)), "{key}");
    }
}

#[wasm_bindgen_test]
async fn login_reaches_sdk_ready() {
    let tim = create().await;
    let rec = Recorder::on(&tim);
    let u = user("ready");
    assert_eq!(tim.login_user(), "");
    let res = tim.login(&u, &sig(&u)).await.expect("login resolves");
    assert_eq!(get(&res, "code").as_f64(), Some(0.0));
    assert_eq!(
        get(&res, "data.actionStatus").as_string().as_deref(),
        Some("OK")
    );
    assert_eq!(get(&res, "data.errorCode").as_f64(), Some(0.0));
    assert_eq!(get(&res, "data.errorInfo").as_string().as_deref(), Some(""));
    assert!(get(&res, "data.repeatLogin").is_undefined());
    assert!(tim.is_ready(), "ready as login resolves");
    // As with tim-js-sdk, SDK_READY comes after the login's resolution, in a later task.
    assert_eq!(
        rec.names(),
        ["netStateChange:connecting", "netStateChange:connected"]
    );
    rec.wait_for("sdkStateReady").await;
    assert_eq!(
        rec.names(),
        [
            "netStateChange:connecting",
            "netStateChange:connected",
            "sdkStateReady"
        ]
    );
    assert_eq!(
        get(&rec.events()[2], "name").as_string().as_deref(),
        Some("sdkStateReady")
    );
    assert!(tim.is_ready());
    assert_eq!(tim.login_user(), u);
    tim.destroy().await.unwrap();
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
        let tim = create().await;
        let rec = Recorder::on(&tim);
        let u = user("bad");
        let err = tim.login(&u, &make(&u)).await.expect_err(what);
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
        tim.destroy().await.unwrap();
    }
    // An SDKAppID the server does not serve.
    let tim = create_with(APP + 7).await;
    let u = user("app");
    let err = tim
        .login(&u, &tim_usersig::generate(APP + 7, KEY, &u, t, 3600))
        .await
        .unwrap_err();
    assert_eq!(code(&err), 70020);
    tim.destroy().await.unwrap();
}

/// Client-side checks answer before any socket is opened.
#[wasm_bindgen_test]
async fn bad_arguments_fail_before_any_network_use() {
    install_probe();
    probe_reset();
    let no_app = Tim::create(&obj(&[("serverURL", URL.into())]));
    assert_eq!(code(&no_app.login("alice", "sig").await.unwrap_err()), 2000);
    // An SDKAppID that is not a whole number in 1..2^32 (or a string of one) is none.
    for bad in [
        JsValue::from(0),
        JsValue::from(-1),
        JsValue::from(4_294_967_296.0),
        "".into(),
        "14000x".into(),
        JsValue::NULL,
    ] {
        let t = Tim::create(&obj(&[
            ("SDKAppID", bad.clone()),
            ("serverURL", URL.into()),
        ]));
        assert_eq!(
            code(&t.login("alice", "sig").await.unwrap_err()),
            2000,
            "SDKAppID {bad:?}"
        );
        t.destroy().await.unwrap();
    }
    let tim = create().await;
    assert_eq!(code(&tim.login("", "sig").await.unwrap_err()), 2002);
    assert_eq!(
        code(&tim.login("not valid!", "sig").await.unwrap_err()),
        2002
    );
    assert_eq!(
        code(&tim.login(&"x".repeat(33), "sig").await.unwrap_err()),
        2002
    );
    assert_eq!(code(&tim.login("alice", "").await.unwrap_err()), 2003);
    let missing = tim.login_with(&obj(&[])).await.unwrap_err();
    assert_eq!(code(&missing), 2002);
    assert_eq!(
        sockets_created(),
        0,
        "no socket for a call that cannot succeed"
    );
    tim.destroy().await.unwrap();
    no_app.destroy().await.unwrap();
}

#[wasm_bindgen_test]
async fn logout_ends_the_session() {
    let tim = create().await;
    let u = user("logout");
    let rec = Recorder::on(&tim);
    tim.login(&u, &sig(&u)).await.unwrap();
    rec.wait_for("sdkStateReady").await;
    rec.clear();
    let res = tim.logout().await.expect("logout resolves");
    assert_eq!(get(&res, "code").as_f64(), Some(0.0));
    assert_eq!(rec.names(), ["sdkStateNotReady"]);
    assert!(!tim.is_ready());
    assert_eq!(tim.login_user(), "");
    let again = tim.logout().await.unwrap_err();
    assert_eq!(code(&again), 2024);
    // The instance can log in again afterwards.
    tim.login(&u, &sig(&u)).await.expect("login after logout");
    assert!(tim.is_ready());
    tim.destroy().await.unwrap();
}

/// As with tim-js-sdk, a page may add its `SDK_READY` handler after `await tim.login(…)`
/// (even a few `then`s later) and still see the event.
#[wasm_bindgen_test]
async fn a_handler_added_after_login_resolves_sees_sdk_ready() {
    let tim = create().await;
    let u = user("late");
    tim.login(&u, &sig(&u)).await.unwrap();
    JsFuture::from(js_sys::Promise::resolve(&JsValue::NULL))
        .await
        .unwrap();
    let late = Recorder::unattached();
    tim.on("sdkStateReady", &late.function(), &JsValue::UNDEFINED);
    late.wait_for("sdkStateReady").await;
    assert_eq!(late.names(), ["sdkStateReady"]);
    tim.destroy().await.unwrap();
}

#[wasm_bindgen_test]
async fn same_user_again_resolves_with_repeat_login() {
    let tim = create().await;
    let u = user("repeat");
    tim.login(&u, &sig(&u)).await.unwrap();
    install_probe();
    probe_reset();
    let res = tim
        .login(&u, &sig(&u))
        .await
        .expect("repeat login resolves");
    assert_eq!(get(&res, "data.repeatLogin"), JsValue::TRUE);
    assert!(!get(&res, "data.errorInfo").as_string().unwrap().is_empty());
    assert_eq!(sockets_created(), 0);
    assert!(tim.is_ready());
    tim.destroy().await.unwrap();
}

#[wasm_bindgen_test]
async fn login_while_logging_in_is_repeat_login_2025() {
    let tim = create().await;
    let u = user("racing");
    let first = tim.login_start(&u, &sig(&u));
    let second = tim.login(&u, &sig(&u)).await.unwrap_err();
    assert_eq!(code(&second), 2025);
    JsFuture::from(first)
        .await
        .expect("the first login still succeeds");
    assert!(tim.is_ready());
    tim.destroy().await.unwrap();
}

#[wasm_bindgen_test]
async fn another_user_switches_accounts() {
    let tim = create().await;
    let (a, b) = (user("alice"), user("bob"));
    let rec = Recorder::on(&tim);
    tim.login(&a, &sig(&a)).await.unwrap();
    rec.wait_for("sdkStateReady").await;
    rec.clear();
    tim.login(&b, &sig(&b))
        .await
        .expect("switching accounts resolves");
    assert_eq!(tim.login_user(), b);
    rec.wait_for("sdkStateReady").await;
    assert_eq!(rec.names(), ["sdkStateNotReady", "sdkStateReady"]);
    tim.destroy().await.unwrap();
}

/// `getLoginStatus()`: 3 logged out, 2 logging in (from the `login()` call on), 1 logged
/// in, also while a lost connection comes back; 3 again after logout and after destroy.
#[wasm_bindgen_test]
async fn login_status_follows_the_session() {
    let tim = create().await;
    let rec = Recorder::on(&tim);
    let u = user("status");
    assert_eq!(tim.login_status(), 3, "before login");
    let login = tim.login_start(&u, &sig(&u));
    assert_eq!(tim.login_status(), 2, "right after login()");
    JsFuture::from(login).await.unwrap();
    assert_eq!(tim.login_status(), 1, "once login resolved");
    rec.wait_for("sdkStateReady").await;

    rec.clear();
    drop_last_socket();
    rec.wait_for("netStateChange:connecting").await;
    assert_eq!(tim.login_status(), 1, "while the connection comes back");
    rec.wait_for("netStateChange:connected").await;
    assert_eq!(tim.login_status(), 1, "back");
    assert!(tim.is_ready());

    tim.logout().await.unwrap();
    assert_eq!(tim.login_status(), 3, "after logout");
    tim.login(&u, &sig(&u)).await.unwrap();
    assert_eq!(tim.login_status(), 1, "logged in again");
    tim.destroy().await.unwrap();
    assert_eq!(tim.login_status(), 3, "after destroy");
}

/// As with `tim-js-sdk`: `TIM.create` gives the live instance of an SDKAppID (a number or
/// a numeric string) to every caller, so the modules of a page share one login; after its
/// `destroy()`, a new one. Without an SDKAppID nothing is shared.
#[wasm_bindgen_test]
async fn create_gives_one_instance_per_sdkappid_until_destroyed() {
    let first = create().await;
    let again = Tim::create(&options(APP));
    let by_string = Tim::create(&obj(&[
        ("SDKAppID", "1400012345".into()),
        ("serverURL", URL.into()),
    ]));
    assert!(first.is(&again), "same SDKAppID, same instance");
    assert!(first.is(&by_string), "a numeric string names the same app");
    let other_app = create_with(APP + 1).await;
    assert!(!other_app.is(&first), "another SDKAppID, another instance");

    // One login, seen through every reference.
    let u = user("shared");
    let rec = Recorder::on(&first);
    first.login(&u, &sig(&u)).await.unwrap();
    rec.wait_for("sdkStateReady").await;
    assert_eq!(by_string.login_user(), u);
    assert!(again.is_ready());
    let repeat = again.login(&u, &sig(&u)).await.unwrap();
    assert_eq!(get(&repeat, "data.repeatLogin"), JsValue::TRUE);

    first.destroy().await.unwrap();
    let fresh = Tim::create(&options(APP));
    assert!(!fresh.is(&first), "a new instance after destroy");
    assert_eq!(fresh.login_status(), 3);
    assert!(
        fresh.is(&Tim::create(&options(APP))),
        "and that one is cached in turn"
    );
    assert_eq!(
        code(&by_string.login(&u, &sig(&u)).await.unwrap_err()),
        2905
    );

    // No (valid) SDKAppID: never cached, each create is its own instance.
    for bad in [JsValue::UNDEFINED, "abc".into(), JsValue::from(0)] {
        let options = obj(&[("SDKAppID", bad.clone()), ("serverURL", URL.into())]);
        let (a, b) = (Tim::create(&options), Tim::create(&options));
        assert!(!a.is(&b), "SDKAppID {bad:?} is not cached");
        a.destroy().await.unwrap();
        b.destroy().await.unwrap();
    }
    fresh.destroy().await.unwrap();
    other_app.destroy().await.unwrap();
}

/// Once `destroy()` has resolved, `TIM.create` makes a new instance, also when the
/// destroyed one had just logged in (its `SDK_READY` still on its way to the page).
#[wasm_bindgen_test]
async fn create_right_after_destroy_is_a_new_instance() {
    let tim = create().await;
    let rec = Recorder::on(&tim);
    let u = user("quick");
    tim.login(&u, &sig(&u)).await.unwrap();
    tim.destroy().await.unwrap();
    // The held SDK_READY went out before destroy's own events, all before it resolved.
    let names = rec.names();
    assert!(
        names.ends_with(&["sdkStateReady", "sdkStateNotReady", "sdkDestroy"].map(String::from)),
        "{names:?}"
    );
    let next = Tim::create(&options(APP));
    assert!(
        !next.is(&tim),
        "TIM.create handed out the destroyed instance"
    );
    next.login(&u, &sig(&u))
        .await
        .expect("the new instance logs in");
    next.destroy().await.unwrap();
}

#[wasm_bindgen_test]
async fn off_really_removes_a_handler() {
    let tim = create().await;
    let removed = Recorder::on(&tim);
    let kept = Recorder::on(&tim);
    for name in ALL_EVENTS {
        tim.off(name, &removed.function(), &JsValue::UNDEFINED);
    }
    let u = user("off");
    tim.login(&u, &sig(&u)).await.unwrap();
    kept.wait_for("sdkStateReady").await;
    assert_eq!(removed.names(), Vec::<String>::new());
    tim.destroy().await.unwrap();
}

/// `this.calls`: `[{ self, event }]` of a [`this_recorder`] handler.
fn calls(recorder: &JsValue) -> Vec<JsValue> {
    js_sys::Array::from(&get(recorder, "calls")).to_vec()
}

fn handler(recorder: &JsValue) -> Function {
    get(recorder, "handler").unchecked_into()
}

/// `once(name, handler, context)`: the next such event only, with `context` as `this`;
/// `off` removes a `once` handler as it does an `on` one. `on` passes its context too.
#[wasm_bindgen_test]
async fn once_handlers_run_once_with_their_context() {
    let tim = create().await;
    let ctx = obj(&[("tag", "ctx".into())]);
    let once = this_recorder();
    tim.once("netStateChange", &handler(&once), &ctx);
    let removed = this_recorder();
    tim.once("sdkStateReady", &handler(&removed), &ctx);
    tim.off("sdkStateReady", &handler(&removed), &ctx);
    let removed_any_ctx = this_recorder();
    tim.once("sdkStateReady", &handler(&removed_any_ctx), &ctx);
    tim.off(
        "sdkStateReady",
        &handler(&removed_any_ctx),
        &JsValue::UNDEFINED,
    );
    let always = this_recorder();
    tim.on("netStateChange", &handler(&always), &ctx);

    let u = user("once");
    tim.login(&u, &sig(&u)).await.unwrap();
    let got = calls(&once);
    assert_eq!(got.len(), 1, "once: called for the first event only");
    assert!(js_sys::Object::is(&get(&got[0], "self"), &ctx), "this");
    assert_eq!(
        get(&got[0], "event.data.state").as_string().as_deref(),
        Some("connecting")
    );
    assert_eq!(calls(&removed).len(), 0, "off removes a once handler");
    assert_eq!(calls(&removed_any_ctx).len(), 0, "off without context too");
    let on_calls = calls(&always);
    assert_eq!(on_calls.len(), 2, "on: connecting, connected");
    assert!(on_calls
        .iter()
        .all(|c| js_sys::Object::is(&get(c, "self"), &ctx)));

    // Gone for good: another session's events do not reach it.
    tim.logout().await.unwrap();
    tim.login(&u, &sig(&u)).await.unwrap();
    assert_eq!(calls(&once).len(), 1);
    assert_eq!(calls(&always).len(), 4);
    // Registered again, it runs again (once more).
    tim.once("sdkStateNotReady", &handler(&once), &ctx);
    tim.logout().await.unwrap();
    assert_eq!(calls(&once).len(), 2);
    tim.destroy().await.unwrap();
    assert_eq!(calls(&once).len(), 2);
}

/// `destroy()` of a logged-in instance: `SDK_NOT_READY`, then `SDK_DESTROY` with
/// `{ SDKAppID }`; then nothing is left (socket, timers, handlers) and every call rejects
/// with 2905, whatever its arguments.
#[wasm_bindgen_test]
async fn destroy_releases_everything_and_later_calls_reject_2905() {
    install_probe();
    probe_reset();
    let tim = create().await;
    let rec = Recorder::on(&tim);
    let u = user("destroy");
    tim.login(&u, &sig(&u)).await.unwrap();
    rec.wait_for("sdkStateReady").await;
    assert_eq!(sockets_open(), 1);
    assert!(
        pending_timers() >= 1,
        "the heartbeat timer is armed while online"
    );
    rec.clear();
    let res = tim.destroy().await.expect("destroy resolves");
    assert_eq!(get(&res, "code").as_f64(), Some(0.0));
    assert_eq!(rec.names(), ["sdkStateNotReady", "sdkDestroy"]);
    assert_eq!(
        get(&rec.events()[1], "data.SDKAppID").as_f64(),
        Some(APP.into())
    );
    pause(50).await;
    assert_eq!(sockets_open(), 0, "the socket is closed");
    assert_eq!(sockets_with_handlers(), 0, "no handler left on any socket");
    assert_eq!(pending_timers(), 0, "no timer left");
    let before = rec.names().len();
    for p in [
        tim.login_start(&u, &sig(&u)),
        // Arguments that fail their own checks before destroy: 2905 all the same.
        tim.login_start("", &sig(&u)),
        tim.login_start(&u, ""),
        tim.login_start_with(&obj(&[])),
        tim.destroy_start(),
    ] {
        assert_eq!(code(&JsFuture::from(p).await.unwrap_err()), 2905);
    }
    assert_eq!(code(&tim.logout().await.unwrap_err()), 2905);
    tim.on("sdkStateReady", &rec.function(), &JsValue::UNDEFINED);
    assert_eq!(rec.names().len(), before, "no event after destroy");
    assert!(!tim.is_ready());
    assert_eq!(tim.login_user(), "");
    assert_eq!(sockets_created(), 1, "no socket after destroy");
}

/// Never logged in: `destroy()` emits only `SDK_DESTROY`, its `SDKAppID` a number even when
/// the page gave a string.
#[wasm_bindgen_test]
async fn destroy_before_login_emits_only_sdk_destroy() {
    let tim = Tim::fresh(&obj(&[
        ("SDKAppID", "1400012345".into()),
        ("serverURL", URL.into()),
    ]))
    .await;
    let rec = Recorder::on(&tim);
    tim.destroy().await.unwrap();
    assert_eq!(rec.names(), ["sdkDestroy"]);
    assert_eq!(
        get(&rec.events()[0], "data.SDKAppID").as_f64(),
        Some(APP.into())
    );
}

#[wasm_bindgen_test]
async fn destroy_during_login_settles_the_login() {
    let tim = create().await;
    let rec = Recorder::on(&tim);
    let u = user("midway");
    let pending = tim.login_start(&u, &sig(&u));
    tim.destroy().await.unwrap();
    assert_eq!(code(&JsFuture::from(pending).await.unwrap_err()), 2905);
    assert_eq!(rec.names().last().map(String::as_str), Some("sdkDestroy"));
    assert!(!rec.names().iter().any(|n| n == "sdkStateReady"));
}

#[wasm_bindgen_test]
async fn unreachable_server_rejects_with_network_error() {
    install_probe();
    let tim = Tim::fresh(&obj(&[
        ("SDKAppID", APP.into()),
        ("serverURL", "ws://127.0.0.1:9".into()),
    ]))
    .await;
    let rec = Recorder::on(&tim);
    let u = user("nowhere");
    let err = tim.login(&u, &sig(&u)).await.unwrap_err();
    assert_eq!(code(&err), 2800);
    // The message says where and what to check.
    let message = get(&err, "message").as_string().unwrap();
    assert!(
        message.contains("ws://127.0.0.1:9/ws") && message.contains("serverURL"),
        "{message}"
    );
    assert_eq!(
        rec.names(),
        ["netStateChange:connecting", "netStateChange:disconnected"]
    );
    assert_eq!(tim.login_status(), 3);
    tim.destroy().await.unwrap();
    let bad = Tim::create(&obj(&[
        ("SDKAppID", APP.into()),
        ("serverURL", "not a url".into()),
    ]));
    let err = bad.login(&u, &sig(&u)).await.unwrap_err();
    assert_eq!(code(&err), 2800);
    // Refused by the WebSocket constructor ("cannot open a WebSocket to …"), or taken as a
    // path of the page's origin (browsers that resolve relative WebSocket URLs) and not found
    // there ("cannot reach the server at …"): either way the message names it.
    let message = get(&err, "message").as_string().unwrap();
    assert!(
        message.contains("not a url/ws") && message.contains("serverURL"),
        "{message}"
    );
    bad.destroy().await.unwrap();
}

/// `destroy()` from inside an event handler (the SDK is mid-dispatch) still logs out first
/// and still tells the other handlers `SDK_NOT_READY`, then `SDK_DESTROY`.
#[wasm_bindgen_test]
async fn destroy_from_an_event_handler_still_logs_out() {
    install_probe();
    probe_reset();
    let tim = create().await;
    let rec = Recorder::on(&tim);
    let me = tim.clone();
    let destroy_on_ready = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let _ = me.destroy_start();
    });
    tim.on(
        "sdkStateReady",
        destroy_on_ready.as_ref().unchecked_ref(),
        &JsValue::UNDEFINED,
    );
    let u = user("selfdestruct");
    tim.login(&u, &sig(&u)).await.unwrap();
    pause(50).await;
    assert!(
        rec.names()
            .ends_with(&["sdkStateNotReady".to_string(), "sdkDestroy".to_string()]),
        "{:?}",
        rec.names()
    );
    assert_eq!(sockets_open(), 0);
    assert_eq!(sockets_with_handlers(), 0);
    assert_eq!(pending_timers(), 0);
    assert_eq!(code(&tim.login(&u, &sig(&u)).await.unwrap_err()), 2905);
}

/// Issue 11, "the SDK spins while offline": with a UserSig good for 180 days and a
/// `getUserSig`, the only wake-up left while offline is the renewal months away, beyond
/// what `setTimeout` takes (2^31-1 ms). It must wait, not fire again and again.
#[wasm_bindgen_test]
async fn offline_with_a_long_lived_usersig_does_not_spin_the_timer() {
    let get_usersig = Closure::<dyn FnMut() -> JsValue>::new(|| JsValue::from("unused"));
    install_probe();
    let tim = Tim::fresh(&obj(&[
        ("SDKAppID", APP.into()),
        ("serverURL", URL.into()),
        ("getUserSig", get_usersig.as_ref().clone()),
    ]))
    .await;
    let rec = Recorder::on(&tim);
    let u = user("longlived");
    let usersig = tim_usersig::generate(APP, KEY, &u, now(), 180 * 86_400);
    tim.login(&u, &usersig).await.unwrap();
    rec.wait_for("sdkStateReady").await;

    dispatch_window_event("offline");
    rec.wait_for("netStateChange:disconnected").await;
    let stop = count_timeouts();
    pause(1_000).await;
    let calls = stop.call0(&JsValue::NULL).unwrap().as_f64().unwrap();
    web_sys::console::log_1(&format!("setTimeout calls in 1 s offline: {calls}").into());
    assert!(calls <= 5.0, "{calls} setTimeout calls in 1 s offline");
    assert_eq!(tim.login_status(), 1, "still logged in while offline");

    dispatch_window_event("online");
    rec.wait_for("netStateChange:connected").await;
    assert!(tim.is_ready());
    tim.destroy().await.unwrap();
}
