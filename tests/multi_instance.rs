//! Several TIM instances in one page against a live `timd`: the seed's multi-instance
//! scenario, kick-out without reconnecting, and resuming after a lost connection.
//! `TIMD_TEST_URL` serves the default settings (one Web instance); `TIMD_TEST_URL_MULTI`
//! serves `--web-instances 2 --login-policy single` (scripts/test.sh starts both).
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use tim_wasm::TIM;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

mod common;

use common::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
export function watchSockets() {
  if (globalThis.__timSockets) return;
  const list = [];
  const Orig = globalThis.WebSocket;
  globalThis.WebSocket = class extends Orig { constructor(...a) { super(...a); list.push(this); } };
  globalThis.__timSockets = list;
}
export function socketCount() { return __timSockets.length; }
// Drops the connection under the SDK, as a network loss would (the SDK did not ask for it).
export function dropSocket(i) { __timSockets[i].close(4999, 'test drops the connection'); }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = watchSockets)]
    fn watch_sockets();
    #[wasm_bindgen(js_name = socketCount)]
    fn socket_count() -> u32;
    #[wasm_bindgen(js_name = dropSocket)]
    fn drop_socket(i: u32);
}

/// One instance with its event log (`name` or `name:type/state`).
struct Tab {
    tim: TIM,
    seen: Rc<RefCell<Vec<String>>>,
    _handler: Closure<dyn FnMut(JsValue)>,
}

impl Tab {
    fn open(url: &str) -> Tab {
        watch_sockets();
        let tim = TIM::create(obj(&[("SDKAppID", APP.into()), ("serverURL", url.into())]));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let handler = Closure::new(move |e: JsValue| {
            let name = get(&e, "name").as_string().unwrap();
            let detail = get(&e, "data.type")
                .as_string()
                .or(get(&e, "data.state").as_string());
            sink.borrow_mut().push(match detail {
                Some(d) => format!("{name}:{d}"),
                None => name,
            });
        });
        for name in [
            "sdkStateReady",
            "sdkStateNotReady",
            "kickedOut",
            "netStateChange",
            "error",
        ] {
            tim.on(
                name,
                handler.as_ref().unchecked_ref::<Function>().clone(),
                JsValue::UNDEFINED,
            );
        }
        Tab {
            tim,
            seen,
            _handler: handler,
        }
    }

    async fn login(&self, user: &str) -> Result<JsValue, JsValue> {
        let opts = obj(&[("userID", user.into()), ("userSig", sig(user).into())]);
        JsFuture::from(self.tim.login(opts)).await
    }

    fn events(&self) -> Vec<String> {
        self.seen.borrow().clone()
    }

    fn clear(&self) {
        self.seen.borrow_mut().clear();
    }

    async fn wait_for(&self, event: &str) {
        for _ in 0..300 {
            if self.events().iter().any(|e| e == event) {
                return;
            }
            pause(10).await;
        }
        panic!("no {event} within 3 s; saw {:?}", self.events());
    }

    async fn destroy(self) {
        JsFuture::from(self.tim.destroy()).await.unwrap();
    }
}

/// seeds/000: Online Web Instances = 2. a1 and a2 log in; a3 logs in; a1 is kicked with
/// `multipleAccount`; a2 and a3 keep working. `a1.logout()` leaves a2 untouched.
#[wasm_bindgen_test]
async fn the_seed_scenario_with_two_web_instances() {
    let u = user("seed");
    let (a1, a2, a3) = (
        Tab::open(URL_MULTI),
        Tab::open(URL_MULTI),
        Tab::open(URL_MULTI),
    );
    a1.login(&u).await.unwrap();
    a2.login(&u).await.unwrap();
    assert!(a1.tim.is_ready() && a2.tim.is_ready());
    a3.login(&u).await.unwrap();
    a1.wait_for("kickedOut:multipleAccount").await;
    assert!(!a1.tim.is_ready());
    assert!(a2.tim.is_ready() && a3.tim.is_ready());
    assert!(!a2
        .events()
        .iter()
        .any(|e| e.starts_with("kickedOut") || e == "sdkStateNotReady"));
    assert!(!a3
        .events()
        .iter()
        .any(|e| e.starts_with("kickedOut") || e == "sdkStateNotReady"));

    // A kicked instance stays out: nothing happens by itself, over several backoff periods.
    pause(2_500).await;
    assert!(!a1.tim.is_ready());
    assert_eq!(
        a1.events().last().map(String::as_str),
        Some("kickedOut:multipleAccount")
    );

    // logout of one instance leaves the other untouched.
    a2.clear();
    JsFuture::from(a3.tim.logout()).await.unwrap();
    pause(200).await;
    assert!(a2.tim.is_ready());
    assert_eq!(a2.events(), Vec::<String>::new());
    for t in [a1, a2, a3] {
        t.destroy().await;
    }
}

#[wasm_bindgen_test]
async fn with_one_web_instance_the_newer_login_wins() {
    let u = user("one");
    let (b1, b2) = (Tab::open(URL), Tab::open(URL));
    b1.login(&u).await.unwrap();
    b2.login(&u).await.unwrap();
    b1.wait_for("kickedOut:multipleAccount").await;
    assert!(b2.tim.is_ready());
    assert!(!b2.events().iter().any(|e| e.starts_with("kickedOut")));
    b1.destroy().await;
    b2.destroy().await;
}

/// Invariant 4: a lost connection comes back on its own slot: the page sees only
/// `NET_STATE_CHANGE` (connecting → connected), the sibling is untouched.
#[wasm_bindgen_test]
async fn a_lost_connection_resumes_without_kicking_its_sibling() {
    let u = user("resume");
    let (a, b) = (Tab::open(URL_MULTI), Tab::open(URL_MULTI));
    a.login(&u).await.unwrap();
    let a_socket = socket_count() - 1;
    b.login(&u).await.unwrap();
    a.clear();
    b.clear();
    drop_socket(a_socket);
    a.wait_for("netStateChange:connecting").await;
    a.wait_for("netStateChange:connected").await;
    assert_eq!(
        a.events(),
        ["netStateChange:connecting", "netStateChange:connected"]
    );
    assert!(a.tim.is_ready());
    pause(100).await;
    assert_eq!(b.events(), Vec::<String>::new(), "the sibling saw nothing");
    assert!(b.tim.is_ready());
    a.destroy().await;
    b.destroy().await;
}

/// Kicked while its connection was down: it learns it when it comes back, with the type it
/// was kicked for, and does not take the slot back.
#[wasm_bindgen_test]
async fn kicked_while_away_learns_it_on_return() {
    let u = user("away");
    let (a, b) = (Tab::open(URL), Tab::open(URL));
    a.login(&u).await.unwrap();
    let a_socket = socket_count() - 1;
    drop_socket(a_socket);
    // b logs in while a is away (a's first retry comes after at least 0.5 s).
    b.login(&u).await.unwrap();
    a.wait_for("kickedOut:multipleAccount").await;
    assert!(!a.tim.is_ready());
    assert!(b.tim.is_ready());
    pause(300).await;
    assert!(!b.events().iter().any(|e| e.starts_with("kickedOut")));
    a.destroy().await;
    b.destroy().await;
}
