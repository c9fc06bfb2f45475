//! Liveness over real sockets: the server pings every heartbeat interval, a client that
//! answers `pong` stays, one that sends nothing is dropped (4003) after two intervals, and
//! an older client that pings on its own timer still gets `pong` and stays.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tim_client::{Client, Config as ClientConfig, Event};
use tim_proto::{close, ClientFrame, Platform, ServerFrame};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const HEARTBEAT_MS: u32 = 200;

/// What the server sent next within `bound`: a frame, a close code, or nothing.
#[derive(Debug, PartialEq)]
enum Got {
    Frame(ServerFrame),
    Closed(u16),
    Nothing,
}

async fn next(ws: &mut Ws, bound: Duration) -> Got {
    loop {
        let Ok(msg) = tokio::time::timeout(bound, ws.next()).await else {
            return Got::Nothing;
        };
        match msg.expect("socket open").expect("no socket error") {
            Message::Text(t) => return Got::Frame(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(frame) => return Got::Closed(frame.map_or(1005, |f| f.code.into())),
            _ => continue,
        }
    }
}

fn attached(server: &Server) -> bool {
    server
        .state
        .registry()
        .instances("alice")
        .iter()
        .any(|i| i.attached)
}

#[tokio::test]
async fn the_server_pings_and_a_client_that_answers_stays_online() {
    let server = Server::start(|c| c.heartbeat_ms = HEARTBEAT_MS).await;
    let mut ws = server.connect().await;
    let ok = login_ok(&mut ws, 1, "alice", "i").await;
    assert_eq!(ok.heartbeat_ms, HEARTBEAT_MS);
    // Ten intervals (five times the drop bound), sending nothing but the answers.
    let (started, mut pings) = (Instant::now(), 0);
    while started.elapsed() < Duration::from_millis(10 * u64::from(HEARTBEAT_MS)) {
        match next(&mut ws, Duration::from_millis(100)).await {
            Got::Frame(ServerFrame::Ping) => {
                pings += 1;
                send(&mut ws, &ClientFrame::Pong).await;
            }
            Got::Nothing => {}
            other => panic!("unexpected {other:?} after {pings} pings"),
        }
    }
    assert!((5..=11).contains(&pings), "one ping per interval: {pings}");
    assert!(attached(&server));
}

#[tokio::test]
async fn a_client_that_does_not_answer_is_dropped_after_two_intervals() {
    let server = Server::start(|c| c.heartbeat_ms = HEARTBEAT_MS).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    let (silent, mut pings) = (Instant::now(), 0);
    let code = loop {
        match next(&mut ws, WAIT).await {
            Got::Frame(ServerFrame::Ping) => pings += 1,
            Got::Closed(code) => break code,
            other => panic!("unexpected {other:?}"),
        }
    };
    let waited = silent.elapsed();
    assert_eq!(code, close::HEARTBEAT_TIMEOUT);
    assert!(pings >= 1, "pinged before being dropped");
    let bound = Duration::from_millis(2 * u64::from(HEARTBEAT_MS));
    assert!(waited >= bound - Duration::from_millis(20), "{waited:?}");
    assert!(waited < bound + Duration::from_millis(1_000), "{waited:?}");
    wait_away(&server).await;
}

#[tokio::test]
async fn an_older_client_pinging_on_its_timer_gets_pong_and_stays() {
    let server = Server::start(|c| c.heartbeat_ms = HEARTBEAT_MS).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    // It never answers the server's pings (it does not know them), but pings every 150 ms.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        send_text(&mut ws, r#""ping""#).await;
        loop {
            match next(&mut ws, WAIT).await {
                Got::Frame(ServerFrame::Pong) => break,
                Got::Frame(ServerFrame::Ping) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(attached(&server));
    // And stops: dropped like any silent socket.
    let code = loop {
        match next(&mut ws, WAIT).await {
            Got::Frame(ServerFrame::Ping) => {}
            Got::Closed(code) => break code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, close::HEARTBEAT_TIMEOUT);
}

#[tokio::test]
async fn no_pings_before_login_and_a_stray_pong_is_harmless() {
    let server = Server::start(|c| c.heartbeat_ms = 50).await;
    let mut ws = server.connect().await;
    assert_eq!(
        next(&mut ws, Duration::from_millis(300)).await,
        Got::Nothing
    );
    send(&mut ws, &ClientFrame::Pong).await;
    assert_eq!(
        next(&mut ws, Duration::from_millis(100)).await,
        Got::Nothing
    );
    login_ok(&mut ws, 1, "alice", "i").await;
    assert_eq!(
        next(&mut ws, WAIT).await,
        Got::Frame(ServerFrame::Ping),
        "pinged once logged in"
    );
}

/// The native client (the same session core as the SDK) stays online on the server's pings
/// alone: no reconnect over twenty intervals.
#[tokio::test]
async fn the_native_client_stays_online_on_the_servers_pings() {
    let server = Server::start(|c| c.heartbeat_ms = HEARTBEAT_MS).await;
    let url = format!("ws://{}", server.addr);
    let mut client = Client::new(&url, ClientConfig::new(APP, Platform::Web, "tab".into()));
    let handle = client.handle().clone();
    handle.login("alice", &sig("alice")).await.unwrap();
    client
        .wait_for(WAIT, |e| matches!(e, Event::Ready))
        .await
        .unwrap();
    let other = client
        .wait_for(Duration::from_millis(20 * u64::from(HEARTBEAT_MS)), |e| {
            !matches!(e, Event::Ready)
        })
        .await;
    assert_eq!(other, None, "no NET_STATE_CHANGE, no kick");
    let status = handle.status().await.unwrap();
    assert!(status.ready && status.connected, "{status:?}");
    assert!(attached(&server));
}
