//! State.StateChange callbacks over real sockets, against a receiver this test runs
//! (`tim_test_support::Receiver`): every Action/Reason from a real client action, Tencent's
//! query and Sign, KickedDevice on a limit kick, retries (500, ErrorCode, timeout, receiver
//! down) with nothing lost and each user's order kept, a restart with events queued, the
//! cap; then three `timd` processes on one Redis, one of them killed with `kill -9`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};
use tim_proto::{ClientFrame, KickReason, ServerFrame};
use tim_test_support::receiver::{pairs, per_user, Request};
use tim_test_support::{Answer, EmbeddedProbe, Receiver};
use timd::backend::SettingsUpdate;
use timd::callbacks::{CallbackSettings, CallbackTarget, StateChange};
use timd::Config;

const TOKEN: &str = "callback-token-for-tests";
/// Long enough for any retry schedule these tests cause.
const DELIVERY: Duration = Duration::from_secs(40);

fn with_callbacks(c: &mut Config, receiver: &Receiver, timeout_ms: u32) {
    c.callback = Some(CallbackTarget {
        url: receiver.url(),
        token: Some(TOKEN.into()),
    });
    c.callback_settings = CallbackSettings {
        timeout_ms,
        ..CallbackSettings::default()
    };
}

fn resume(seq: u32, ticket: &str) -> ClientFrame {
    ClientFrame::Resume {
        seq,
        ticket: ticket.into(),
    }
}

fn logout(seq: u32) -> ClientFrame {
    ClientFrame::Logout { seq }
}

async fn logout_ok(ws: &mut Ws, seq: u32) {
    send(ws, &logout(seq)).await;
    match recv(ws).await {
        ServerFrame::LogoutOk { .. } => {}
        other => panic!("expected logout_ok, got {other:?}"),
    }
}

/// Tencent's callback authentication, checked as a receiver does.
fn check_query(r: &Request, op: &str) {
    let q = &r.query;
    assert_eq!(q["SdkAppid"], APP.to_string());
    assert_eq!(q["CallbackCommand"], "State.StateChange");
    assert_eq!(q["contenttype"], "json");
    assert_eq!(q["OptPlatform"], op, "{:?}", r.pair());
    let time: u64 = q["RequestTime"].parse().unwrap();
    assert!(
        time.abs_diff(now()) <= 60,
        "RequestTime {time} is a minute off"
    );
    let want: String = Sha256::digest(format!("{TOKEN}{time}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(q["Sign"], want);
    assert_eq!(r.body["CallbackCommand"], "State.StateChange");
    assert_eq!(r.path, "/im/callback");
}

#[tokio::test]
async fn each_pair_comes_from_a_real_client_action_in_order_and_signed() {
    let receiver = Receiver::start().await;
    let server = Server::start(|c| {
        with_callbacks(c, &receiver, 2_000);
        c.login = web(1);
    })
    .await;
    // A login, then a second tab over the Web limit kicks it: one Login with KickedDevice,
    // nothing for the kicked tab.
    let mut a = server.connect().await;
    login_ok(&mut a, 1, "alice", "tab-a").await;
    let mut b = server.connect().await;
    login_ok(&mut b, 1, "alice", "tab-b").await;
    expect_kicked(&mut a, KickReason::MultipleAccount).await;
    // A logout; a login whose socket then closes; its resume; a REST kick of the resumed one.
    logout_ok(&mut b, 2).await;
    let mut c = server.connect().await;
    let ok = login_ok(&mut c, 1, "alice", "tab-c").await;
    receiver.wait_accepted(4, DELIVERY).await;
    let closed = std::time::Instant::now();
    drop(c);
    let got = receiver.wait_accepted(5, DELIVERY).await;
    println!(
        "Disconnect/LinkClose reached the receiver {:?} after the socket closed",
        got[4].at.duration_since(closed)
    );
    let mut c2 = server.connect().await;
    send(&mut c2, &resume(2, &ok.ticket)).await;
    assert!(matches!(recv(&mut c2).await, ServerFrame::ResumeOk { .. }));
    receiver.wait_accepted(6, DELIVERY).await;
    let kicked = server
        .state
        .backend()
        .kick_user(APP, "alice", now(), server.state.callbacks().sink(APP))
        .await
        .unwrap();
    assert_eq!(kicked, Some(1));
    expect_kicked(&mut c2, KickReason::RestApi).await;
    let got = receiver.wait_accepted(7, DELIVERY).await;
    assert_eq!(
        per_user(&got)["alice"],
        pairs(&[
            ("Login", "Register"),
            ("Login", "Register"),
            ("Logout", "Unregister"),
            ("Login", "Register"),
            ("Disconnect", "LinkClose"),
            ("Login", "Register"),
            ("Logout", "Unregister"),
        ])
    );
    assert!(got[0].kicked().is_empty());
    assert_eq!(got[1].kicked(), ["Web"]);
    assert!(got[2].body.get("KickedDevice").is_none());
    for (i, r) in got.iter().enumerate() {
        let op = if i == 6 { "RESTAPI" } else { "Web" };
        check_query(r, op);
        // The REST kick's Logout is stored with the kick, which no client address made.
        let ip = if i == 6 { "" } else { "127.0.0.1" };
        assert_eq!(r.query["ClientIP"], ip);
        assert_eq!(r.body["Info"]["To_Account"], "alice");
    }
    assert!(got
        .windows(2)
        .all(|w| w[0].event_time() <= w[1].event_time()));
    let ids: HashSet<String> = got.iter().map(Request::event_id).collect();
    assert_eq!(ids.len(), 7, "EventIDs are unique");
    // A clean run: nothing is sent twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 7);
}

#[tokio::test]
async fn a_lost_heartbeat_is_disconnect_timeout() {
    let receiver = Receiver::start().await;
    let server = Server::start(|c| {
        with_callbacks(c, &receiver, 2_000);
        c.heartbeat_ms = 100;
    })
    .await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "bob", "i").await;
    // Silent from now on: the server's pings go unanswered.
    let got = receiver.wait_accepted(2, DELIVERY).await;
    assert_eq!(
        per_user(&got)["bob"],
        pairs(&[("Login", "Register"), ("Disconnect", "TimeOut")])
    );
    check_query(&got[1], "Unknown");
    drop(ws);
}

#[tokio::test]
async fn failures_are_retried_and_nothing_is_lost_or_reordered() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(|c| with_callbacks(c, &receiver, 300)).await;
    // The first answers fail every way a receiver can: 500, ErrorCode 1, never.
    receiver.then(&[
        Answer::Status(500),
        Answer::ErrorCode(1),
        Answer::Hang,
        Answer::Status(302),
    ]);
    let users = ["u0", "u1", "u2", "u3", "u4"];
    for round in 0..2 {
        for user in users {
            let mut ws = server.connect().await;
            login_ok(&mut ws, 1, user, "i").await;
            logout_ok(&mut ws, 2).await;
        }
        if round == 0 {
            // Then the receiver is down (connections refused) for a while.
            receiver.down();
            tokio::time::sleep(Duration::from_millis(800)).await;
            receiver.up().await;
        }
    }
    let got = receiver.wait_accepted(20, DELIVERY).await;
    let by_user = per_user(&got);
    for user in users {
        assert_eq!(
            by_user[user],
            pairs(&[
                ("Login", "Register"),
                ("Logout", "Unregister"),
                ("Login", "Register"),
                ("Logout", "Unregister"),
            ]),
            "{user}"
        );
    }
    let failed = receiver.requests().len() - receiver.accepted().len();
    assert!(failed >= 4, "the failing answers were retried ({failed})");
    // Counted once the deliverer has read each answer, a few task hops after the receiver
    // recorded it.
    sent(&server, 20).await;
    assert_eq!(server.state.callbacks().metrics().sent_count(), 20);
}

/// Waits until the deliverer counted `n` events sent: their answers were read, so they
/// left the outbox and a receiver going down now makes none of them be sent again.
async fn sent(server: &Server, n: u64) {
    tim_test_support::wait::eventually_within("the deliverer read the answers", DELIVERY, || {
        server.state.callbacks().metrics().sent_count() >= n
    })
    .await;
}

#[tokio::test]
async fn events_queued_while_the_receiver_is_down_survive_a_restart() {
    let mut receiver = Receiver::down_from_start().await;
    let mut server = Server::start(|c| with_callbacks(c, &receiver, 500)).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "carol", "i").await;
    logout_ok(&mut ws, 2).await;
    let mut dave = server.connect().await;
    login_ok(&mut dave, 1, "dave", "i").await;
    // The restart closes dave's socket (Disconnect/LinkClose), reopens the same SQLite file.
    server.restart().await;
    drop(dave);
    assert!(receiver.requests().is_empty());
    receiver.up().await;
    let got = receiver.wait_accepted(4, DELIVERY).await;
    let by_user = per_user(&got);
    assert_eq!(
        by_user["carol"],
        pairs(&[("Login", "Register"), ("Logout", "Unregister")])
    );
    assert_eq!(
        by_user["dave"],
        pairs(&[("Login", "Register"), ("Disconnect", "LinkClose")])
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 4);
}

#[tokio::test]
async fn past_the_cap_the_oldest_events_go_and_logins_never_wait() {
    let mut receiver = Receiver::down_from_start().await;
    let server = Server::start(|c| {
        with_callbacks(c, &receiver, 500);
        c.callback_settings.queue_cap = 100;
        c.limits.login_rate_per_user = 0;
        c.limits.login_rate_per_addr = 0;
    })
    .await;
    let mut ws = server.connect().await;
    for n in 0..60u32 {
        login_ok(&mut ws, 2 * n + 1, "erin", "i").await;
        // The next login on the same socket logs this one out first.
    }
    logout_ok(&mut ws, 1000).await;
    // 60 logins, 60 logouts: 20 dropped, oldest first.
    let (queued, _) = server.state.callbacks().outbox().stats(APP).await.unwrap();
    assert_eq!(queued, 100);
    receiver.up().await;
    receiver.wait_accepted(100, DELIVERY).await;
    // The newest events are all delivered, the last one last (what the deliverer had
    // already read ahead before the cap dropped it from the outbox is delivered too).
    tim_test_support::wait::eventually_within("erin's logout delivered", DELIVERY, || {
        receiver.accepted().last().map(Request::pair)
            == Some(("Logout".into(), "Unregister".into(), "erin".into()))
    })
    .await;
    assert!((100..=120).contains(&receiver.accepted().len()));
    let text = reqwest_metrics(&server).await;
    assert!(
        text.contains("timd_callbacks_dropped_total{why=\"cap\"} 20"),
        "{text}"
    );
}

/// `/metrics` as a scraper reads it.
async fn reqwest_metrics(server: &Server) -> String {
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        tim_test_support::http::get(addr, "/metrics", Duration::from_secs(5))
            .expect("/metrics answers")
            .1
    })
    .await
    .unwrap()
}

/// The Logout/Unregister events waiting in the outbox (the receiver down: none leaves it).
async fn logouts_queued(server: &Server) -> Vec<StateChange> {
    server
        .state
        .callbacks()
        .outbox()
        .read(APP, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.event)
        .filter(|e| e.a == "Logout")
        .collect()
}

/// A REST kick's events are written in the kick's own store transaction, one per connected
/// instance it ends (none for one away: its Disconnect was reported): they are stored when
/// the kick returns, before any kicked socket hears of it, and the sockets store none.
#[tokio::test]
async fn a_rest_kick_stores_its_events_with_the_kick_and_the_sockets_none() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(|c| with_callbacks(c, &receiver, 2_000)).await;
    let mut a = server.connect().await;
    login_ok(&mut a, 1, "alice", "tab-a").await;
    let mut b = server.connect().await;
    login_ok(&mut b, 1, "alice", "tab-b").await;
    let mut c = server.connect().await;
    login_ok(&mut c, 1, "alice", "tab-c").await;
    go_away(&server, c).await;
    receiver.wait_accepted(4, DELIVERY).await;
    sent(&server, 4).await;
    receiver.down();
    let kicked = server
        .state
        .backend()
        .kick_user(APP, "alice", now(), server.state.callbacks().sink(APP))
        .await
        .unwrap();
    assert_eq!(kicked, Some(3), "two connected, one away");
    let queued = logouts_queued(&server).await;
    assert_eq!(queued.len(), 2, "stored with the kick: {queued:?}");
    for e in &queued {
        assert_eq!(
            (e.r.as_str(), e.op.as_str(), e.ip.as_str()),
            ("Unregister", "RESTAPI", "")
        );
    }
    expect_kicked(&mut a, KickReason::RestApi).await;
    expect_kicked(&mut b, KickReason::RestApi).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        logouts_queued(&server).await.len(),
        2,
        "the sockets stored none"
    );
    receiver.up().await;
    let got = receiver.wait_accepted(6, DELIVERY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 6, "each once");
    assert_eq!(
        per_user(&got)["alice"],
        pairs(&[
            ("Login", "Register"),
            ("Login", "Register"),
            ("Login", "Register"),
            ("Disconnect", "LinkClose"),
            ("Logout", "Unregister"),
            ("Logout", "Unregister"),
        ])
    );
    for r in &got[4..] {
        check_query(r, "RESTAPI");
    }
}

/// An account deletion's events too: with the deletion, once.
#[tokio::test]
async fn an_account_deletion_stores_its_events_with_the_deletion() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(|c| with_callbacks(c, &receiver, 2_000)).await;
    let mut a = server.connect().await;
    login_ok(&mut a, 1, "alice", "tab-a").await;
    receiver.wait_accepted(1, DELIVERY).await;
    sent(&server, 1).await;
    receiver.down();
    let deleted = server
        .state
        .backend()
        .delete_accounts(
            APP,
            &["alice".into(), "nobody".into()],
            now(),
            server.state.callbacks().sink(APP),
        )
        .await
        .unwrap();
    assert_eq!(deleted, [Some(1), None]);
    let queued = logouts_queued(&server).await;
    assert_eq!(queued.len(), 1, "stored with the deletion: {queued:?}");
    assert_eq!(
        (queued[0].op.as_str(), queued[0].ip.as_str()),
        ("RESTAPI", "")
    );
    expect_kicked(&mut a, KickReason::RestApi).await;
    receiver.up().await;
    let got = receiver.wait_accepted(2, DELIVERY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 2, "once");
    assert_eq!(
        per_user(&got)["alice"],
        pairs(&[("Login", "Register"), ("Logout", "Unregister")])
    );
}

/// Holds the store thread with a job of its own until the returned sender is dropped; the
/// returned receiver says when the job started.
fn hold_store(
    server: &Server,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    let store = server.state.store().clone();
    tokio::spawn(async move {
        store
            .call(move |_| {
                let _ = started.send(());
                let _ = wait.recv();
                Ok(())
            })
            .await
    });
    (release, running)
}

/// A login that comes in after the kick's transaction read who is connected, and before the
/// kick is in force, is kicked with the others: its event is stored by its socket (the
/// kick's transaction did not know it), so it too is reported exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_rest_kick_is_reported_once_too() {
    let receiver = Receiver::start().await;
    let server = Server::start(|c| with_callbacks(c, &receiver, 2_000)).await;
    let mut a = server.connect().await;
    login_ok(&mut a, 1, "alice", "tab-a").await;
    receiver.wait_accepted(1, DELIVERY).await;
    // The kick's job and a second hold queue behind a first hold: they run in one batch,
    // the kick's job first; the second hold keeps its transaction open.
    let (first, first_running) = hold_store(&server);
    first_running.await.unwrap();
    let store = server.state.store().clone();
    let state = server.state.clone();
    let kick = tokio::spawn(async move {
        state
            .backend()
            .kick_user(APP, "alice", now(), state.callbacks().sink(APP))
            .await
    });
    eventually("the kick queued", || store.queued() == 1).await;
    let (second, second_running) = hold_store(&server);
    eventually("the second hold queued", || store.queued() == 2).await;
    drop(first);
    second_running.await.unwrap();
    // The kick's job ran (alice's tab-a connected): tab-b logs in now (a returning user
    // needs no store job to be admitted).
    let mut b = server.connect().await;
    send(&mut b, &login(1, "alice", &sig("alice"), "tab-b")).await;
    eventually("tab-b admitted", || {
        server.state.registry().instances("alice").len() == 2
    })
    .await;
    drop(second);
    assert_eq!(kick.await.unwrap().unwrap(), Some(2));
    expect_kicked(&mut a, KickReason::RestApi).await;
    match recv(&mut b).await {
        ServerFrame::LoginOk { .. } => {}
        other => panic!("expected login_ok, got {other:?}"),
    }
    expect_kicked(&mut b, KickReason::RestApi).await;
    let got = receiver.wait_accepted(4, DELIVERY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 4, "each once");
    assert_eq!(
        per_user(&got)["alice"],
        pairs(&[
            ("Login", "Register"),
            ("Logout", "Unregister"),
            ("Login", "Register"),
            ("Logout", "Unregister"),
        ])
    );
    // tab-a's by the kick's transaction, tab-b's by its socket (with its address).
    check_query(&got[1], "RESTAPI");
    assert_eq!(got[1].query["ClientIP"], "");
    check_query(&got[3], "RESTAPI");
    assert_eq!(got[3].query["ClientIP"], "127.0.0.1");
}

/// `set_login_settings … ApplyNow` reports each connected instance it kicks,
/// `Logout`/`Unregister` by `RESTAPI`, once; one away gets no event (its Disconnect was).
#[tokio::test]
async fn an_apply_now_kick_is_reported_once_by_restapi() {
    let receiver = Receiver::start().await;
    let server = Server::start(|c| {
        with_callbacks(c, &receiver, 2_000);
        c.login = web(3);
    })
    .await;
    let a = {
        let mut a = server.connect().await;
        login_ok(&mut a, 1, "alice", "tab-a").await;
        a
    };
    go_away(&server, a).await;
    let mut b = server.connect().await;
    login_ok(&mut b, 1, "alice", "tab-b").await;
    let mut c = server.connect().await;
    login_ok(&mut c, 1, "alice", "tab-c").await;
    receiver.wait_accepted(4, DELIVERY).await;
    let app = server.state.apps().default_app().clone();
    let update = SettingsUpdate {
        web_instances: Some(1),
        ..SettingsUpdate::default()
    };
    server
        .state
        .backend()
        .set_settings(
            server.state.apps(),
            &app,
            update,
            "admin",
            true,
            server.state.callbacks().sink(APP),
        )
        .await
        .unwrap();
    expect_kicked(&mut b, KickReason::MultipleAccount).await;
    expect_untouched(&mut c).await;
    assert_eq!(server.state.registry().instances("alice").len(), 1);
    let got = receiver.wait_accepted(5, DELIVERY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 5, "once");
    assert_eq!(
        per_user(&got)["alice"],
        pairs(&[
            ("Login", "Register"),
            ("Disconnect", "LinkClose"),
            ("Login", "Register"),
            ("Login", "Register"),
            ("Logout", "Unregister"),
        ])
    );
    check_query(&got[4], "RESTAPI");
    assert_eq!(got[4].query["ClientIP"], "");
}
