//! The abuse limits on `/ws`, driven by bounded floods of real sockets on loopback: which
//! origins may connect, connection caps in total and per client address, connection and
//! login-attempt rates per address — each refusal with its close code and its count in
//! `/metrics`. Client addresses other than 127.0.0.1 come through a trusted proxy header.

mod common;

use common::*;
use tim_proto::{close, ClientFrame, ServerFrame};
use timd::client_addr::TrustedProxies;
use timd::limits::{LimitSettings, Refusal};
use timd::origins::AllowedOrigins;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn unlimited() -> LimitSettings {
    LimitSettings {
        max_connections: 0,
        max_connections_per_addr: 0,
        connection_rate_per_addr: 0,
        login_rate_per_addr: 0,
        login_rate_per_user: 0,
        max_refusals_in_flight: 0,
    }
}

/// Logs alice in again and again on `ws` until refused: the seq and the error.
async fn login_until_refused(ws: &mut Ws) -> (u32, tim_proto::ErrorFrame) {
    for seq in 1..=20 {
        send(ws, &login(seq, "alice", &sig("alice"), "tab")).await;
        match recv(ws).await {
            ServerFrame::LoginOk(_) => continue,
            ServerFrame::Error(e) => return (seq, e),
            other => panic!("{other:?}"),
        }
    }
    panic!("never limited")
}

/// Tokens a bucket of `per_sec` may have refilled since `started` (rounded up).
fn refilled(started: std::time::Instant, per_sec: u32) -> u32 {
    let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    ms.saturating_mul(per_sec).div_ceil(1000)
}

fn behind_proxy(c: &mut timd::Config) {
    c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
}

/// The socket works: a ping is answered.
async fn usable(ws: &mut Ws) {
    send(ws, &ClientFrame::Ping).await;
    assert_eq!(recv(ws).await, ServerFrame::Pong);
}

/// The server closes the socket straight away with `code`.
async fn refused_with(ws: &mut Ws, code: u16) {
    assert_eq!(recv_close(ws).await, code);
}

async fn metrics(server: &Server, headers: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{headers}\r\n",
        server.addr
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    (text[9..12].parse().unwrap(), text)
}

fn count(metrics: &str, reason: &str) -> u64 {
    let needle = format!("timd_ws_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .unwrap_or_else(|| panic!("{needle} in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn only_allowed_origins_open_ws_and_native_clients_send_none() {
    let server = Server::start(|_| {}).await;
    let own = format!("http://{}", server.addr);
    usable(&mut server.connect().await).await; // no Origin: a native client
    usable(&mut server.connect_with(&[("origin", &own)]).await).await; // same origin
    for evil in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let mut ws = server.connect_with(&[("origin", evil)]).await;
        refused_with(&mut ws, close::ORIGIN_NOT_ALLOWED).await;
    }
    assert_eq!(server.state.metrics().refused_count(Refusal::Origin), 3);

    let listed = Server::start(|c| {
        c.allowed_origins = AllowedOrigins::parse("https://app.example").unwrap()
    })
    .await;
    usable(
        &mut listed
            .connect_with(&[("origin", "https://app.example")])
            .await,
    )
    .await;
    let mut ws = listed
        .connect_with(&[("origin", "https://evil.example")])
        .await;
    refused_with(&mut ws, close::ORIGIN_NOT_ALLOWED).await;

    let any = Server::start(|c| c.allowed_origins = AllowedOrigins::Any).await;
    usable(
        &mut any
            .connect_with(&[("origin", "https://evil.example")])
            .await,
    )
    .await;

    // Demo mode adds loopback pages (the demo page, test pages on another port).
    let demo = Server::start(|c| c.demo = true).await;
    usable(
        &mut demo
            .connect_with(&[("origin", "http://localhost:8000")])
            .await,
    )
    .await;
    let mut ws = demo
        .connect_with(&[("origin", "https://evil.example")])
        .await;
    refused_with(&mut ws, close::ORIGIN_NOT_ALLOWED).await;
}

#[tokio::test]
async fn the_total_connection_cap_closes_the_next_with_4007() {
    let server = Server::start(|c| {
        c.limits = LimitSettings {
            max_connections: 20,
            ..unlimited()
        }
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut ws = server.connect().await;
        usable(&mut ws).await;
        held.push(ws);
    }
    for _ in 0..5 {
        let mut ws = server.connect().await;
        refused_with(&mut ws, close::SERVER_FULL).await;
    }
    // A place freed is a place taken.
    drop(held.pop());
    eventually("a place freed", || server.state.limits().open() == 19).await;
    usable(&mut server.connect().await).await;
    assert_eq!(
        server
            .state
            .metrics()
            .refused_count(Refusal::MaxConnections),
        5
    );
}

#[tokio::test]
async fn the_per_address_cap_counts_each_client_address() {
    let server = Server::start(|c| {
        behind_proxy(c);
        c.limits = LimitSettings {
            max_connections_per_addr: 10,
            ..unlimited()
        };
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(server.connect_from("203.0.113.1").await);
    }
    let mut ws = server.connect_from("203.0.113.1").await;
    refused_with(&mut ws, close::TOO_MANY_CONNECTIONS).await;
    // Another address, and the proxy's own, are not affected.
    usable(&mut server.connect_from("203.0.113.2").await).await;
    usable(&mut server.connect().await).await;
    for ws in &mut held {
        usable(ws).await;
    }
}

#[tokio::test]
async fn a_connection_flood_from_one_address_is_held_to_its_rate() {
    let server = Server::start(|c| {
        behind_proxy(c);
        c.limits = LimitSettings {
            connection_rate_per_addr: 20,
            ..unlimited()
        };
    })
    .await;
    let started = std::time::Instant::now();
    let mut admitted = 0;
    let mut refused = 0;
    for _ in 0..100 {
        let mut ws = server.connect_from("198.51.100.7").await;
        // The server may have closed already: a failed send is fine, the close is read.
        let _ = futures_util::SinkExt::send(
            &mut ws,
            tokio_tungstenite::tungstenite::Message::Text(r#""ping""#.into()),
        )
        .await;
        match recv_frame_or_close(&mut ws).await {
            Ok(ServerFrame::Pong) => admitted += 1,
            Err(close::CONNECTION_RATE) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("100 connections in {elapsed:.2} s: {admitted} admitted, {refused} refused (4009)");
    // A burst of 20, then 20 per second.
    assert!(admitted >= 20, "{admitted}");
    assert!(admitted as f64 <= 20.0 + 20.0 * elapsed + 1.0, "{admitted}");
    assert_eq!(admitted + refused, 100);
    assert_eq!(
        server
            .state
            .metrics()
            .refused_count(Refusal::ConnectionRate),
        refused as u64
    );
    // Another address connects meanwhile.
    usable(&mut server.connect_from("198.51.100.8").await).await;
}

#[tokio::test]
async fn login_attempts_over_the_address_rate_get_70050_and_4010() {
    let server = Server::start(|c| {
        c.limits = LimitSettings {
            login_rate_per_addr: 5,
            ..unlimited()
        }
    })
    .await;
    let mut ws = server.connect().await;
    let (seq, refused) = login_until_refused(&mut ws).await;
    assert!(seq > 5, "a burst of 5 passes: {seq}");
    assert_eq!((refused.seq, refused.code), (Some(seq), 70050));
    refused_with(&mut ws, close::LOGIN_RATE).await;
    assert!(server.state.metrics().refused_count(Refusal::LoginRate) >= 1);
}

#[tokio::test]
async fn metrics_count_refusals_and_are_for_loopback_only() {
    let server = Server::start(|c| {
        behind_proxy(c);
        c.limits = LimitSettings {
            max_connections_per_addr: 1,
            ..unlimited()
        };
    })
    .await;
    let _held = server.connect_from("203.0.113.9").await;
    let mut ws = server.connect_from("203.0.113.9").await;
    refused_with(&mut ws, close::TOO_MANY_CONNECTIONS).await;
    let mut ws = server
        .connect_with(&[("origin", "https://evil.example")])
        .await;
    refused_with(&mut ws, close::ORIGIN_NOT_ALLOWED).await;
    let (status, text) = metrics(&server, "").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(count(&text, "max_connections_per_addr"), 1);
    assert_eq!(count(&text, "origin"), 1);
    assert_eq!(count(&text, "connection_rate"), 0);
    assert!(text.contains("timd_ws_connections 1"), "{text}");
    // Through the proxy for an outside client: refused.
    let (status, _) = metrics(&server, "X-Forwarded-For: 203.0.113.9\r\n").await;
    assert_eq!(status, 403);
}

/// The next frame, or the close code if the server closed instead.
async fn recv_frame_or_close(ws: &mut Ws) -> Result<ServerFrame, u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer")
            .expect("open");
        match msg {
            Ok(Message::Text(t)) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(Some(f))) => return Err(u16::from(f.code)),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            // Our ping may race the server's close.
            Err(_) | Ok(Message::Close(None)) => return Err(0),
            Ok(other) => panic!("{other:?}"),
        }
    }
}

/// One user's logins are limited before the store is asked (`--login-rate-per-user`):
/// beyond the burst a verified login gets 70050 and the socket stays; other users log in;
/// and logins with bad UserSigs for that user (anyone can send those) never spend its budget.
#[tokio::test]
async fn logins_over_the_users_rate_get_70050_and_bad_usersigs_do_not_count() {
    let server = Server::start(|c| {
        c.limits = LimitSettings {
            login_rate_per_user: 3,
            ..unlimited()
        }
    })
    .await;
    let mut attacker = server.connect().await;
    for seq in 1..=10 {
        send(&mut attacker, &login(seq, "alice", &sig("mallory"), "x")).await;
        assert!(matches!(recv(&mut attacker).await, ServerFrame::Error(_)));
    }
    let mut ws = server.connect().await;
    let started = std::time::Instant::now();
    let (seq, refused) = login_until_refused(&mut ws).await;
    // A burst of 3 passes (each login a durable write: on a loaded machine the bucket may
    // refill a token meanwhile, 3 a second).
    let refilled = refilled(started, 3);
    assert!(
        (4..=4 + refilled).contains(&seq),
        "a burst of 3 passes, after 10 bad UserSigs for the user: refused at {seq} after {:?}",
        started.elapsed()
    );
    assert_eq!((refused.seq, refused.code), (Some(seq), 70050));
    assert!(refused.message.contains("this user"), "{refused:?}");
    // The socket stays, and another user is not limited by alice's rate.
    send(&mut ws, &login(seq + 1, "bob", &sig("bob"), "tab")).await;
    assert!(matches!(recv(&mut ws).await, ServerFrame::LoginOk(_)));
    assert!(server.state.metrics().refused_count(Refusal::UserLoginRate) >= 1);
}

/// The safe `--trusted-proxies` setting: only the proxy's own address is trusted, and the
/// proxy appends the address it got each request from (haproxy `option forwardfor`, nginx
/// `$proxy_add_x_forwarded_for`): whatever `X-Forwarded-For` a client writes itself, it is
/// counted by its real address. A proxy that passes the client's header through unchanged
/// lets each client choose its address (shown in the second half).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_that_appends_a_forged_x_forwarded_for_changes_nothing() {
    let server = Server::start(|c| {
        c.trusted_proxies = TrustedProxies::parse("127.0.0.2").unwrap();
        c.limits = LimitSettings {
            max_connections_per_addr: 1,
            ..unlimited()
        }
    })
    .await;
    let appending = tim_test_support::Haproxy::start_with(
        &[server.addr],
        "  option forwardfor",
        "source 127.0.0.2",
    );
    let passing = tim_test_support::Haproxy::start_with(&[server.addr], "", "source 127.0.0.2");
    let connect = |url: String, forged: &'static str| async move {
        tim_test_support::ws::try_connect_with(&url, &[("X-Forwarded-For", forged)])
            .await
            .expect("upgraded")
    };
    let mut first = connect(appending.ws_url(), "203.0.113.1").await;
    usable(&mut first).await;
    let mut second = connect(appending.ws_url(), "203.0.113.2").await;
    refused_with(&mut second, close::TOO_MANY_CONNECTIONS).await;
    drop(first);
    // The unsafe proxy: the forged header is all timd sees, so each forged address is new.
    let mut a = connect(passing.ws_url(), "203.0.113.3").await;
    let mut b = connect(passing.ws_url(), "203.0.113.4").await;
    usable(&mut a).await;
    usable(&mut b).await;
}

/// Garbage logins from an address (a neighbour behind the same NAT) spend a budget of their
/// own: once over it they get 70050 and 4010, and valid logins from that address still pass.
#[tokio::test]
async fn garbage_logins_never_spend_the_budget_of_valid_ones() {
    let server = Server::start(|c| {
        c.limits = LimitSettings {
            login_rate_per_addr: 5,
            ..unlimited()
        }
    })
    .await;
    let mut garbage = server.connect().await;
    let started = std::time::Instant::now();
    let mut seq = 0;
    let refused = loop {
        seq += 1;
        assert!(seq <= 20, "garbage never limited");
        send(&mut garbage, &login(seq, "mallory", "not-a-usersig", "x")).await;
        let (s, code, _) = recv_error(&mut garbage).await;
        assert_eq!(s, Some(seq));
        if code == 70050 {
            break seq;
        }
    };
    let refilled = refilled(started, 5);
    assert!(
        (6..=6 + refilled).contains(&refused),
        "a burst of 5 passes: refused at {refused} after {:?}",
        started.elapsed()
    );
    refused_with(&mut garbage, close::LOGIN_RATE).await;
    let mut ws = server.connect().await;
    for seq in 1..=5 {
        login_ok(&mut ws, seq, "alice", "tab").await;
    }
}

/// Refused connections are upgraded (to be told why) only so many at once: while that many
/// are being told, the next refused handshake gets a plain HTTP 503, costing no task.
#[tokio::test]
async fn refused_upgrades_in_flight_are_capped_and_the_rest_get_503() {
    let server = Server::start(|c| {
        c.allowed_origins = AllowedOrigins::parse("https://app.example").unwrap();
        c.limits = LimitSettings {
            max_refusals_in_flight: 1,
            ..unlimited()
        }
    })
    .await;
    let evil = [("origin", "https://evil.example")];
    // Upgraded and told why; not read yet, so its refusal is still in flight.
    let mut first = server.connect_with(&evil).await;
    match server.try_connect_with(&evil).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "1");
        }
        other => panic!("expected 503, got {:?}", other.map(|_| "a socket")),
    }
    refused_with(&mut first, close::ORIGIN_NOT_ALLOWED).await;
    // An allowed origin is not a refusal: it is admitted as ever.
    usable(
        &mut server
            .connect_with(&[("origin", "https://app.example")])
            .await,
    )
    .await;
    assert_eq!(server.state.metrics().refused_count(Refusal::Origin), 2);
}
