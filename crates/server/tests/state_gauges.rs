//! `/metrics` reports the size of every in-memory map that traffic grows, so that a soak can
//! tell a leak from a working set: a real `timd` process, real sockets, and the gauges
//! following what the traffic left behind — and going back down once the sweeper has run.
mod common;

use std::time::Duration;

use common::{eventually, recv, send, sig, TimdNode, Ws};
use tim_proto::{ClientFrame, Login, Platform, ServerFrame};
use tim_test_support::http::get;
use tim_test_support::wait::eventually_within;

/// How long an away slot may take to be swept: the 1 s grace plus the sweeper's 2 s period,
/// with room for a loaded machine.
const SWEEP_BOUND: Duration = Duration::from_secs(15);

/// One gauge, e.g. `timd_state_entries{map="away"}`, as the node reports it now.
fn gauge(node: &TimdNode, series: &str) -> i64 {
    let (status, text) = get(node.addr(), "/metrics", Duration::from_secs(5)).expect("/metrics");
    assert_eq!(status, 200, "{text}");
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn entries(node: &TimdNode, map: &str) -> i64 {
    gauge(node, &format!("timd_state_entries{{map=\"{map}\"}}"))
}

async fn login(node: &TimdNode, user: &str, instance: &str, usersig: &str) -> (Ws, ServerFrame) {
    let mut ws = tim_test_support::ws::connect(&node.ws_url()).await;
    let frame = ClientFrame::Login(Login {
        seq: 1,
        sdkappid: common::APP,
        user: user.into(),
        usersig: usersig.into(),
        platform: Platform::Web,
        instance: instance.into(),
    });
    send(&mut ws, &frame).await;
    let answer = recv(&mut ws).await;
    (ws, answer)
}

#[tokio::test]
async fn the_state_gauges_follow_the_traffic_and_the_sweeper() {
    let node = TimdNode::builder()
        .args(["--web-instances", "1", "--resume-grace-ms", "1000"])
        .start();
    for map in [
        "users",
        "away",
        "tombstones",
        "rate_limiter",
        "failure_limiter",
    ] {
        assert_eq!(entries(&node, map), 0, "{map} on a fresh node");
    }
    let idle_tasks = gauge(&node, "timd_tasks_alive");

    // A second tab over the Web limit of 1 kicks the first: one tombstone.
    let (mut first, ok) = login(&node, "alice", "tab-a", &sig("alice")).await;
    assert!(matches!(ok, ServerFrame::LoginOk(_)), "{ok:?}");
    let (second, ok) = login(&node, "alice", "tab-b", &sig("alice")).await;
    assert!(matches!(ok, ServerFrame::LoginOk(_)), "{ok:?}");
    assert!(matches!(recv(&mut first).await, ServerFrame::Kicked { .. }));
    assert_eq!(entries(&node, "tombstones"), 1);
    assert_eq!(entries(&node, "users"), 1);
    assert!(entries(&node, "rate_limiter") >= 1, "127.0.0.1 is tracked");
    assert!(
        gauge(&node, "timd_tasks_alive") > idle_tasks,
        "a task per open connection"
    );

    // A wrong signature is remembered by the failure limiter.
    let forged = tim_usersig::generate(common::APP, "not-the-key", "bob", common::now(), 3600);
    let (_bad, answer) = login(&node, "bob", "tab-x", &forged).await;
    assert!(matches!(answer, ServerFrame::Error(_)), "{answer:?}");
    assert_eq!(entries(&node, "failure_limiter"), 1);

    // The network drops under the second tab: its slot waits for a resume, then the sweeper
    // (every 2 s) lets it go once the 1 s grace is over: up to 3 s after it went away, and
    // more on a busy machine, so the wait is a generous multiple of that.
    drop(second);
    eventually("away slot counted", || entries(&node, "away") == 1).await;
    eventually_within("away slot swept", SWEEP_BOUND, || {
        entries(&node, "away") == 0
    })
    .await;
    drop(first);
    eventually("tasks back to idle", || {
        gauge(&node, "timd_tasks_alive") <= idle_tasks + 1
    })
    .await;
}
