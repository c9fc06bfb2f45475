//! The timd process fixture runs the real binary: healthy when returned, serving logins,
//! gone after kill -9, back on the same port and data with start_again, and a clean exit
//! on SIGTERM. A node on Redis runs in cluster mode.

use std::time::Duration;

use tim_proto::ServerFrame;
use tim_test_support::{login_ok, recv, recv_close, send, ws, RedisServer, TimdNode};

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_node_serves_dies_with_kill9_and_starts_again_on_its_port() {
    let mut node = TimdNode::start();
    assert!(node.healthz());
    let pid = node.pid().unwrap();
    let mut socket = ws::connect(&node.ws_url()).await;
    login_ok(&mut socket, 1, "alice", "tab-1").await;

    node.kill9();
    assert!(!pid_alive(pid), "the process is gone");
    assert!(!node.healthz());
    assert!(std::net::TcpStream::connect(node.addr()).is_err());
    // No close frame from a dead process: the stream just ends.
    let end = tokio::time::timeout(
        Duration::from_secs(3),
        futures_util::StreamExt::next(&mut socket),
    )
    .await
    .expect("the socket ends with the process");
    assert!(!matches!(
        end,
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))
    ));

    let addr = node.addr();
    node.start_again();
    assert_eq!(node.addr(), addr);
    assert_ne!(node.pid(), Some(pid));
    let mut socket = ws::connect(&node.ws_url()).await;
    login_ok(&mut socket, 1, "alice", "tab-2").await;
    assert_eq!(
        node.log().matches("timd listening").count(),
        2,
        "{}",
        node.log()
    );

    // SIGTERM: sockets closed with "service restart", exit 0.
    let closing = tokio::spawn(async move { recv_close(&mut socket).await });
    let status = tokio::task::spawn_blocking(move || node.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(closing.await.unwrap(), tim_proto::close::SERVICE_RESTART);
}

#[test]
fn a_node_that_cannot_start_reports_its_log() {
    let failed = std::panic::catch_unwind(|| {
        TimdNode::builder().arg("--no-such-flag").start();
    })
    .expect_err("timd refuses an unknown flag");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("--no-such-flag"), "{message}");
}

#[tokio::test]
async fn a_node_on_redis_runs_in_cluster_mode() {
    let redis = RedisServer::start();
    let node = TimdNode::builder()
        .redis(&redis.url())
        .args(["--lease-ms", "900"])
        .start();
    assert!(node.log().contains("cluster mode"), "{}", node.log());
    let mut socket = ws::connect(&node.ws_url()).await;
    send(
        &mut socket,
        &tim_test_support::login(1, "bob", &tim_test_support::sig("bob"), "tab"),
    )
    .await;
    assert!(matches!(recv(&mut socket).await, ServerFrame::LoginOk(_)));
    assert_ne!(redis.command(&["DBSIZE"]), "0", "the login is in Redis");
}
