//! Liveness over real sockets: the server pings every heartbeat interval, a client that
//! answers `pong` stays, one that sends nothing is dropped (4003) after two intervals, and
//! an older client that pings on its own timer still gets `pong` and stays. The interval is
//! 1 s, so a stall of the test on a busy machine shorter than that cannot fail them; only
//! the lower bounds of the timings are asserted.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tim_client::{Client, Config as ClientConfig, Event};
use tim_proto::{close, ClientFrame, Platform, ServerFrame};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The interval: a client has a whole interval to answer a ping (it is dropped after two
/// without a frame), and the server pings an interval after the last one, so this is how
/// long a stall of the test (or of the server in it) on a busy machine may last without
/// failing a test whose socket must stay, or must be pinged before it is dropped.
const HEARTBEAT_MS: u32 = 1_000;

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
    let interval = Duration::from_millis(HEARTBEAT_MS.into());
    let mut ws = server.connect().await;
    let logged_in = Instant::now();
    let ok = login_ok(&mut ws, 1, "alice", "i").await;
    assert_eq!(ok.heartbeat_ms, HEARTBEAT_MS);
    // Four pings, each answered, and nothing else: the socket stays (four intervals, twice
    // the drop bound).
    const PINGS: u32 = 4;
    for pings in 0..PINGS {
        match next(&mut ws, interval + WAIT).await {
            Got::Frame(ServerFrame::Ping) => send(&mut ws, &ClientFrame::Pong).await,
            other => panic!("unexpected {other:?} after {pings} pings"),
        }
    }
    // One ping per interval, never more often: the n-th comes n intervals after the login
    // at the earliest (load only makes it later).
    let took = logged_in.elapsed();
    println!(
        "{PINGS} pings in {took:?} (interval {interval:?}): one every {:?}",
        took / PINGS
    );
    assert!(took >= interval * PINGS, "{PINGS} pings in {took:?}");
    assert!(attached(&server));
    expect_untouched(&mut ws).await;
}

#[tokio::test]
async fn a_client_that_does_not_answer_is_dropped_after_two_intervals() {
    let server = Server::start(|c| c.heartbeat_ms = HEARTBEAT_MS).await;
    let mut ws = server.connect().await;
    // The server last heard from the socket when the login arrived, after this.
    let before_login = Instant::now();
    login_ok(&mut ws, 1, "alice", "i").await;
    let mut pings = 0;
    let code = loop {
        match next(&mut ws, WAIT).await {
            Got::Frame(ServerFrame::Ping) => pings += 1,
            Got::Closed(code) => break code,
            other => panic!("unexpected {other:?}"),
        }
    };
    let waited = before_login.elapsed();
    assert_eq!(code, close::HEARTBEAT_TIMEOUT);
    assert!(pings >= 1, "pinged before being dropped");
    // Never before two intervals of silence (how much later depends on the machine's load:
    // the loop above waits for the close with a generous bound).
    let bound = Duration::from_millis(2 * u64::from(HEARTBEAT_MS));
    println!("dropped {waited:?} after the login (bound {bound:?}), after {pings} pings");
    assert!(waited >= bound, "{waited:?}");
    wait_away(&server).await;
}

#[tokio::test]
async fn an_older_client_pinging_on_its_timer_gets_pong_and_stays() {
    let server = Server::start(|c| c.heartbeat_ms = HEARTBEAT_MS).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    // It never answers the server's pings (it does not know them), but pings every 300 ms,
    // for three intervals (past the two after which a silent socket is dropped).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
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
    let server = Server::start(|c| c.heartbeat_ms = HEARTBEAT_MS).await;
    let interval = Duration::from_millis(HEARTBEAT_MS.into());
    let mut ws = server.connect().await;
    // Two and a half intervals logged out (within the 5 s login timeout): a ping would have
    // come after one.
    assert_eq!(next(&mut ws, interval * 5 / 2).await, Got::Nothing);
    send(&mut ws, &ClientFrame::Pong).await;
    expect_untouched(&mut ws).await;
    login_ok(&mut ws, 1, "alice", "i").await;
    assert_eq!(
        next(&mut ws, interval + WAIT).await,
        Got::Frame(ServerFrame::Ping),
        "pinged once logged in"
    );
}

/// The native client (the same session core as the SDK) stays online on the server's pings
/// alone: no reconnect over five intervals (more than twice the drop bound).
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
        .wait_for(Duration::from_millis(5 * u64::from(HEARTBEAT_MS)), |e| {
            !matches!(e, Event::Ready)
        })
        .await;
    assert_eq!(other, None, "no NET_STATE_CHANGE, no kick");
    let status = handle.status().await.unwrap();
    assert!(status.ready && status.connected, "{status:?}");
    assert!(attached(&server));
}
