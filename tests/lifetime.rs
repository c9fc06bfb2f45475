//! A UserSig's lifetime while online, in a real browser against a live `timd`: expiry ends
//! the session with `userSigExpired`; `getUserSig` renews it in time; a renewal that keeps
//! failing ends with `userSigExpired` too.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise};
use tim_wasm::TIM;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

mod common;

use common::*;

wasm_bindgen_test_configure!(run_in_browser);

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
        sink.borrow_mut()
            .push(get(&e, "data.type").as_string().unwrap());
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
