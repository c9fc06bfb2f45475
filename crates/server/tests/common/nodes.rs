//! Cluster tests with real `timd` processes on one real Redis: a node, a logged-in socket.

use tim_proto::{ClientFrame, ServerFrame};

use super::{recv, send, sig, RedisServer, TimdNode, Ws};

/// A short lease, so that lapses happen within a test.
pub const LEASE_MS: u64 = 900;

/// A node on `redis` with [`LEASE_MS`] and room for two Web instances per user.
pub fn node(redis: &RedisServer) -> TimdNode {
    TimdNode::builder()
        .redis(&redis.url())
        .args(["--lease-ms", &LEASE_MS.to_string(), "--web-instances", "2"])
        .start()
}

/// A Web login frame (seq 1) of `user` on `instance`.
pub fn login_frame(user: &str, instance: &str, usersig: &str) -> ClientFrame {
    tim_test_support::login(1, user, usersig, instance)
}

/// A socket logged in on `node`: the socket and its ticket.
pub async fn online(node: &TimdNode, user: &str, instance: &str) -> (Ws, String) {
    let mut ws = tim_test_support::ws::connect(&node.ws_url()).await;
    send(&mut ws, &login_frame(user, instance, &sig(user))).await;
    match recv(&mut ws).await {
        ServerFrame::LoginOk(ok) => (ws, ok.ticket),
        other => panic!("{user}/{instance}: {other:?}"),
    }
}
