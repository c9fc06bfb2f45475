//! A UserSig's lifetime while online, in a real browser against a live `timd`: expiry ends
//! the session with `userSigExpired` (then `SDK_NOT_READY`); `getUserSig` renews it in time;
//! a renewal that keeps failing ends with `userSigExpired` too; a `getUserSig` that never
//! answers does not stop renewal.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

mod common;

use common::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A new instance of this page's SDK (with the page's `getUserSig`, if any) and its events.
async fn page(get_usersig: Option<&Function>) -> (Tim, Recorder) {
    let mut options = vec![("SDKAppID", JsValue::from(APP)), ("serverURL", URL.into())];
    if let Some(f) = get_usersig {
        options.push(("getUserSig", f.into()));
    }
    let tim = Tim::fresh(&obj(&options)).await;
    let rec = Recorder::on(&tim);
    (tim, rec)
}

fn kicks(rec: &Recorder) -> Vec<String> {
    rec.names()
        .into_iter()
        .filter(|n| n.starts_with("kickedOut"))
        .collect()
}

#[wasm_bindgen_test]
async fn expiry_while_online_kicks_with_usersig_expired() {
    let (tim, rec) = page(None).await;
    let u = user("expiring");
    tim.login(&u, &sig_with(&u, 2)).await.expect("login");
    assert!(tim.is_ready());
    assert!(rec.saw_within("sdkStateNotReady", 4_000).await);
    // KICKED_OUT, then SDK_NOT_READY, as tim-js-sdk emits them.
    let names = rec.names();
    let kick = names.iter().position(|n| n.starts_with("kickedOut"));
    let kick = kick.unwrap_or_else(|| panic!("kicked: {names:?}"));
    assert_eq!(
        names[kick..kick + 2],
        ["kickedOut:userSigExpired", "sdkStateNotReady"]
    );
    assert!(!tim.is_ready());
    assert_eq!(tim.login_status(), 3, "logged out after a kick");
    assert_eq!(tim.login_user(), "");
    tim.destroy().await.unwrap();
}

#[wasm_bindgen_test]
async fn get_usersig_renews_the_session_in_time() {
    let u = user("renewing");
    let calls = Rc::new(Cell::new(0));
    let (c, who) = (calls.clone(), u.clone());
    // Returns a Promise of a fresh UserSig, as a page fetching it from its server would.
    let get_usersig = Closure::<dyn FnMut() -> Promise>::new(move || {
        c.set(c.get() + 1);
        Promise::resolve(&JsValue::from(sig_with(&who, 3600)))
    });
    let (tim, rec) = page(Some(get_usersig.as_ref().unchecked_ref())).await;
    tim.login(&u, &sig_with(&u, 3)).await.expect("login");
    pause(4_500).await;
    assert!(calls.get() >= 1, "getUserSig was asked");
    assert_eq!(kicks(&rec), Vec::<String>::new(), "not expired");
    assert!(tim.is_ready());
    assert_eq!(tim.login_status(), 1);
    tim.destroy().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_renewal_that_keeps_failing_ends_with_usersig_expired() {
    let u = user("garbage");
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let get_usersig = Closure::<dyn FnMut() -> JsValue>::new(move || {
        c.set(c.get() + 1);
        JsValue::from(42) // not a UserSig
    });
    let (tim, rec) = page(Some(get_usersig.as_ref().unchecked_ref())).await;
    tim.login(&u, &sig_with(&u, 3)).await.expect("login");
    assert!(rec.saw_within("sdkStateNotReady", 5_000).await);
    assert!(calls.get() >= 1);
    assert_eq!(kicks(&rec), ["kickedOut:userSigExpired"]);
    let names = rec.names();
    let kick = names
        .iter()
        .position(|n| n.starts_with("kickedOut"))
        .unwrap();
    assert_eq!(names[kick + 1], "sdkStateNotReady", "{names:?}");
    assert_eq!(tim.login_status(), 3);
    tim.destroy().await.unwrap();
}

/// A `getUserSig` whose Promise never settles must not stop renewal: its answer times out
/// (10 s), the session retries 5 s later and asks again. The UserSig has 36 s of life, so
/// renewal is first asked at half of it (18 s) and again at about 33 s, before expiry.
/// Slow (about 35 s): the one slow test.
#[wasm_bindgen_test]
async fn a_get_usersig_that_never_answers_is_asked_again() {
    const LIFE_S: u64 = 36;
    let u = user("silent");
    let asked = Rc::new(RefCell::new(Vec::<f64>::new()));
    let a = asked.clone();
    let get_usersig = Closure::<dyn FnMut() -> Promise>::new(move || {
        a.borrow_mut().push(now_ms());
        Promise::new(&mut |_, _| {})
    });
    let (tim, rec) = page(Some(get_usersig.as_ref().unchecked_ref())).await;
    let start = now_ms();
    tim.login(&u, &sig_with(&u, LIFE_S)).await.expect("login");
    let asked_twice = wait_until(35_000, || asked.borrow().len() >= 2).await;
    let times: Vec<f64> = asked.borrow().iter().map(|t| t - start).collect();
    web_sys::console::log_1(&format!("getUserSig asked at {times:?} ms after login").into());
    assert!(asked_twice, "getUserSig asked again within 35 s: {times:?}");
    let gap = times[1] - times[0];
    assert!(
        gap >= 10_000.0,
        "asked again only after the answer timed out: {gap} ms"
    );
    assert_eq!(kicks(&rec), Vec::<String>::new());
    assert!(tim.is_ready());
    tim.destroy().await.unwrap();
}
