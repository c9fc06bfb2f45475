//! A UserSig's lifetime while online, in a real browser against a live `timd`: expiry ends
//! the session with `userSigExpired`; `getUserSig` renews it in time; a renewal that keeps
//! failing ends with `userSigExpired` too.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use tim_wasm::TIM;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const URL: &str = match option_env!("TIMD_TEST_URL") {
    Some(u) => u,
    None => "ws://127.0.0.1:19000",
};
const KEY: &str = match option_env!("TIMD_TEST_KEY") {
    Some(k) => k,
    None => "tim-wasm-test-key-0123456789abcdef",
};
const APP: u32 = 1_400_012_345;

#[wasm_bindgen(inline_js = "
export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
export function nowSecs() { return Math.floor(Date.now() / 1000); }
")]
extern "C" {
    fn sleep(ms: u32) -> Promise;
    #[wasm_bindgen(js_name = nowSecs)]
    fn now_secs() -> f64;
}

fn obj(fields: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn user(tag: &str) -> String {
    format!("{tag}_{}", (js_sys::Math::random() * 1e9) as u64)
}

/// A UserSig for `user` with `left` seconds of validity left.
fn sig_with(user: &str, left: u64) -> String {
    let now = now_secs() as u64;
    tim_usersig::generate(APP, KEY, user, now + left - 3600, 3600)
}

async fn pause(ms: u32) {
    JsFuture::from(sleep(ms)).await.unwrap();
}

struct Page {
    tim: TIM,
    kicked: Rc<RefCell<Vec<String>>>,
    _on_kick: Closure<dyn FnMut(JsValue)>,
}

fn page(get_usersig: Option<&Function>) -> Page {
    let mut options = vec![("SDKAppID", JsValue::from(APP)), ("serverURL", URL.into())];
    if let Some(f) = get_usersig {
        options.push(("getUserSig", f.into()));
    }
    let tim = TIM::create(obj(&options));
    let kicked = Rc::new(RefCell::new(Vec::new()));
    let sink = kicked.clone();
    let on_kick = Closure::new(move |e: JsValue| {
        let t = Reflect::get(&Reflect::get(&e, &"data".into()).unwrap(), &"type".into()).unwrap();
        sink.borrow_mut().push(t.as_string().unwrap());
    });
    tim.on(
        "kickedOut",
        on_kick.as_ref().unchecked_ref::<Function>().clone(),
        JsValue::UNDEFINED,
    );
    Page {
        tim,
        kicked,
        _on_kick: on_kick,
    }
}

async fn login(p: &Page, user: &str, usersig: &str) {
    let opts = obj(&[("userID", user.into()), ("userSig", usersig.into())]);
    JsFuture::from(p.tim.login(opts)).await.expect("login");
}

#[wasm_bindgen_test]
async fn expiry_while_online_kicks_with_usersig_expired() {
    let p = page(None);
    let u = user("expiring");
    login(&p, &u, &sig_with(&u, 2)).await;
    assert!(p.tim.is_ready());
    for _ in 0..40 {
        if !p.kicked.borrow().is_empty() {
            break;
        }
        pause(100).await;
    }
    assert_eq!(*p.kicked.borrow(), ["userSigExpired"]);
    assert!(!p.tim.is_ready());
    JsFuture::from(p.tim.destroy()).await.unwrap();
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
    let p = page(Some(get_usersig.as_ref().unchecked_ref()));
    login(&p, &u, &sig_with(&u, 3)).await;
    pause(4_500).await;
    assert!(calls.get() >= 1, "getUserSig was asked");
    assert_eq!(*p.kicked.borrow(), Vec::<String>::new(), "not expired");
    assert!(p.tim.is_ready());
    JsFuture::from(p.tim.destroy()).await.unwrap();
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
    let p = page(Some(get_usersig.as_ref().unchecked_ref()));
    login(&p, &u, &sig_with(&u, 3)).await;
    for _ in 0..50 {
        if !p.kicked.borrow().is_empty() {
            break;
        }
        pause(100).await;
    }
    assert!(calls.get() >= 1);
    assert_eq!(*p.kicked.borrow(), ["userSigExpired"]);
    JsFuture::from(p.tim.destroy()).await.unwrap();
}
