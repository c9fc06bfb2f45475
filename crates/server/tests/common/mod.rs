//! The server suite's helpers. What the native suites share (the test app, an in-process
//! `timd`, the raw frame client, the process fixtures) is in `tim-test-support`; only
//! what is this suite's own stays here.
#![allow(dead_code, unused_imports)]

pub mod nodes;

pub use tim_test_support::{
    eventually, expect_untouched, login, login_ok, now, recv, recv_close, recv_close_within,
    recv_error, round_trip, send, send_text, sig, EmbeddedProbe, RedisServer, Server, TimdNode, Ws,
    APP, KEY, WAIT,
};

/// The network drops under `ws` (no logout): waits until alice's instance is away.
pub async fn go_away(server: &Server, ws: Ws) {
    drop(ws);
    eventually("away", || {
        server
            .state
            .registry()
            .instances("alice")
            .iter()
            .any(|i| !i.attached)
    })
    .await;
}

/// Waits until every instance of alice is away (its socket gone, its slot resumable).
pub async fn wait_away(server: &Server) {
    eventually("instance away (resumable)", || {
        server
            .state
            .registry()
            .instances("alice")
            .iter()
            .all(|i| !i.attached)
    })
    .await;
}

/// Web limit `n`, one per other platform, the dual policy.
pub fn web(n: u8) -> timd::policy::LoginSettings {
    timd::policy::LoginSettings {
        web_instances: n,
        platform_instances: 1,
        policy: timd::policy::LoginPolicy::Dual,
    }
}

/// Expects `kicked{reason}`, then close 4002.
pub async fn expect_kicked(ws: &mut Ws, reason: tim_proto::KickReason) {
    match recv(ws).await {
        tim_proto::ServerFrame::Kicked { reason: r } => assert_eq!(r, reason),
        other => panic!("expected kicked {reason:?}, got {other:?}"),
    }
    assert_eq!(recv_close(ws).await, tim_proto::close::KICKED);
}
