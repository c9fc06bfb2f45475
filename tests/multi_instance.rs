//! Several instances of one app against a live `timd`, each in its own frame as tabs would
//! be (each frame runs its own copy of the SDK, see `common::Frame`): the seed's
//! multi-instance scenario, kick-out without reconnecting, and resuming after a lost
//! connection. `TIMD_TEST_URL` serves the default settings (one Web instance);
//! `TIMD_TEST_URL_MULTI` serves `--web-instances 2 --login-policy single`
//! (scripts/test.sh starts both).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

mod common;

use common::*;

wasm_bindgen_test_configure!(run_in_browser);

/// One tab: a frame, its SDK instance and that instance's events.
struct Tab {
    frame: Frame,
    tim: Tim,
    rec: Recorder,
}

impl Tab {
    async fn open(url: &str) -> Tab {
        let frame = Frame::open().await;
        let tim = frame.open_tim(url);
        let rec = Recorder::on(&tim);
        Tab { frame, tim, rec }
    }

    async fn login(&self, user: &str) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
        self.tim.login(user, &sig(user)).await
    }

    fn events(&self) -> Vec<String> {
        self.rec.names()
    }

    /// After a round trip with the server (everything it sent this tab before has then been
    /// handled), whether the tab saw a kick or lost its session.
    async fn disturbed_settled(&self) -> bool {
        assert!(
            self.frame.round_trip().await,
            "a round trip on a live connection"
        );
        self.disturbed()
    }

    /// Whether it saw a kick or lost its session.
    fn disturbed(&self) -> bool {
        self.events()
            .iter()
            .any(|e| e.starts_with("kickedOut") || e == "sdkStateNotReady")
    }

    /// `destroy()`, then the frame goes.
    async fn close(self) {
        self.tim.destroy().await.unwrap();
    }
}

/// The frames are separate instances: `TIM.create` in one does not hand out another's.
#[wasm_bindgen_test]
async fn each_frame_has_its_own_instance() {
    let (a, b) = (Tab::open(URL).await, Tab::open(URL).await);
    assert!(!a.tim.is(&b.tim));
    assert!(a.tim.is(&a.frame.open_tim(URL)), "cached within its frame");
    a.close().await;
    b.close().await;
}

/// seeds/000: Online Web Instances = 2. a1 and a2 log in; a3 logs in; a1 is kicked with
/// `multipleAccount` (then `SDK_NOT_READY`); a2 and a3 keep working. `a3.logout()` leaves
/// a2 untouched.
#[wasm_bindgen_test]
async fn the_seed_scenario_with_two_web_instances() {
    let u = user("seed");
    let a1 = Tab::open(URL_MULTI).await;
    let a2 = Tab::open(URL_MULTI).await;
    let a3 = Tab::open(URL_MULTI).await;
    a1.login(&u).await.unwrap();
    a2.login(&u).await.unwrap();
    assert!(a1.tim.is_ready() && a2.tim.is_ready());
    a3.login(&u).await.unwrap();
    a1.rec.wait_for("sdkStateNotReady").await;
    assert!(
        a1.events().ends_with(&[
            "kickedOut:multipleAccount".into(),
            "sdkStateNotReady".into()
        ]),
        "{:?}",
        a1.events()
    );
    assert!(!a1.tim.is_ready());
    assert_eq!(a1.tim.login_status(), 3);
    assert!(a2.tim.is_ready() && a3.tim.is_ready());
    assert!(!a2.disturbed_settled().await, "{:?}", a2.events());
    assert!(!a3.disturbed_settled().await, "{:?}", a3.events());

    // A kicked instance stays out: nothing happens by itself, over several backoff periods.
    pause(2_500).await;
    assert!(!a1.tim.is_ready());
    assert_eq!(
        a1.events().last().map(String::as_str),
        Some("sdkStateNotReady")
    );

    // logout of one instance leaves the other untouched.
    a2.rec.clear();
    a3.tim.logout().await.unwrap();
    assert!(a2.frame.round_trip().await);
    assert!(a2.tim.is_ready());
    assert_eq!(a2.events(), Vec::<String>::new());
    for t in [a1, a2, a3] {
        t.close().await;
    }
}

#[wasm_bindgen_test]
async fn with_one_web_instance_the_newer_login_wins() {
    let u = user("one");
    let (b1, b2) = (Tab::open(URL).await, Tab::open(URL).await);
    b1.login(&u).await.unwrap();
    b2.login(&u).await.unwrap();
    b1.rec.wait_for("sdkStateNotReady").await;
    let kicked = b1.events();
    let at = kicked
        .iter()
        .position(|e| e == "kickedOut:multipleAccount")
        .unwrap_or_else(|| panic!("b1 is kicked: {kicked:?}"));
    assert_eq!(kicked[at + 1], "sdkStateNotReady", "{kicked:?}");
    assert_eq!(b1.tim.login_status(), 3, "logged out after a kick");
    assert_eq!(b1.tim.login_user(), "");
    assert!(b2.tim.is_ready());
    assert!(!b2.disturbed_settled().await, "{:?}", b2.events());
    b1.close().await;
    b2.close().await;
}

/// Invariant 4: a lost connection comes back on its own slot: the page sees only
/// `NET_STATE_CHANGE` (connecting → connected), stays logged in throughout, and the
/// sibling is untouched.
#[wasm_bindgen_test]
async fn a_lost_connection_resumes_without_kicking_its_sibling() {
    let u = user("resume");
    let (a, b) = (Tab::open(URL_MULTI).await, Tab::open(URL_MULTI).await);
    a.login(&u).await.unwrap();
    b.login(&u).await.unwrap();
    a.rec.wait_for("sdkStateReady").await;
    b.rec.wait_for("sdkStateReady").await;
    a.rec.clear();
    b.rec.clear();
    a.frame.drop_socket();
    a.rec.wait_for("netStateChange:connecting").await;
    assert_eq!(a.tim.login_status(), 1, "logged in while it comes back");
    a.rec.wait_for("netStateChange:connected").await;
    assert_eq!(
        a.events(),
        ["netStateChange:connecting", "netStateChange:connected"]
    );
    assert!(a.tim.is_ready());
    assert_eq!(a.tim.login_status(), 1);
    assert_eq!(a.frame.sockets(), 2, "one new connection");
    assert!(b.frame.round_trip().await);
    assert_eq!(b.events(), Vec::<String>::new(), "the sibling saw nothing");
    assert!(b.tim.is_ready());
    a.close().await;
    b.close().await;
}

/// Kicked while its connection was down: it learns it when it comes back, with the type it
/// was kicked for (then `SDK_NOT_READY`), and does not take the slot back.
#[wasm_bindgen_test]
async fn kicked_while_away_learns_it_on_return() {
    let u = user("away");
    let (a, b) = (Tab::open(URL).await, Tab::open(URL).await);
    a.login(&u).await.unwrap();
    a.rec.wait_for("sdkStateReady").await;
    a.rec.clear();
    // The connection drops and the network stays down (`offline`): a cannot come back (its
    // first retry would otherwise come after 0.5 s) before b has logged in.
    a.frame.drop_socket();
    a.frame.set_online(false);
    a.rec.wait_for("netStateChange:disconnected").await;
    b.login(&u).await.unwrap();
    assert!(
        !a.events().iter().any(|e| e.starts_with("kickedOut")),
        "away, a cannot have heard of the kick: {:?}",
        a.events()
    );
    assert_eq!(a.frame.sockets(), 1);
    a.frame.set_online(true);
    a.rec.wait_for("sdkStateNotReady").await;
    let events = a.events();
    assert_eq!(
        events,
        [
            "netStateChange:disconnected",
            "netStateChange:connecting",
            "kickedOut:multipleAccount",
            "sdkStateNotReady"
        ],
        "learnt on its way back"
    );
    assert_eq!(
        a.frame.sockets(),
        2,
        "one connection back, which was told of the kick"
    );
    assert!(!a.tim.is_ready());
    assert_eq!(a.tim.login_status(), 3);
    assert!(b.tim.is_ready());
    assert!(!b.disturbed_settled().await, "{:?}", b.events());
    a.close().await;
    b.close().await;
}
