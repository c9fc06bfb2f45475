//! The `/ws` gateway over real sockets: a `timd` on 127.0.0.1:0, tokio-tungstenite clients.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tim_proto::{close, ClientFrame, KickReason, ServerFrame, MAX_FRAME_BYTES};
use timd::Store;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn login_ok_carries_ticket_heartbeat_and_expiry() {
    let server = Server::start(|c| {
        c.heartbeat_ms = 12_345;
        c.login.web_instances = 2;
    })
    .await;
    let mut ws = server.connect().await;
    let time = now();
    let usersig = tim_usersig::generate(APP, KEY, "alice", time, 3600);
    send(&mut ws, &login(7, "alice", &usersig, "tab-1")).await;
    let ServerFrame::LoginOk(ok) = recv(&mut ws).await else {
        panic!("expected login_ok")
    };
    assert_eq!(ok.seq, 7);
    assert_eq!(ok.heartbeat_ms, 12_345);
    assert_eq!(ok.expire_at, time + 3600);
    let claims = server
        .state
        .apps()
        .default_app()
        .tickets()
        .verify(&ok.ticket, time)
        .unwrap();
    assert_eq!(
        (claims.user.as_str(), claims.instance.as_str()),
        ("alice", "tab-1")
    );
    assert_eq!((claims.expire_at, claims.sig_time), (time + 3600, time));

    let online = server.state.registry().instances("alice");
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].instance, "tab-1");
    assert_eq!(online[0].since_ms, claims.since_ms);
    assert_eq!(online[0].platform, tim_proto::Platform::Web);

    // A second login gets a different ticket.
    let mut ws2 = server.connect().await;
    let ok2 = login_ok(&mut ws2, 1, "alice", "tab-2").await;
    assert_ne!(ok2.ticket, ok.ticket);
    assert_eq!(server.state.registry().instances("alice").len(), 2);
}

#[tokio::test]
async fn every_login_failure_has_its_code_and_the_socket_stays_usable() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    let t = now();
    let cases: Vec<(ClientFrame, u32)> = vec![
        (
            ClientFrame::Login(tim_proto::Login {
                sdkappid: APP + 1,
                ..match login(1, "alice", &sig("alice"), "i") {
                    ClientFrame::Login(l) => l,
                    _ => unreachable!(),
                }
            }),
            70020,
        ),
        (login(2, "bad user!", &sig("alice"), "i"), 70402),
        (login(3, &"x".repeat(33), &sig("alice"), "i"), 70402),
        (login(4, "alice", "", "i"), 70002),
        (login(5, "alice", "not-a-usersig", "i"), 70003),
        (
            login(
                6,
                "alice",
                &tim_usersig::generate(APP, "wrong-key", "alice", t, 3600),
                "i",
            ),
            70009,
        ),
        (
            login(
                7,
                "alice",
                &tim_usersig::generate(APP, KEY, "bob", t, 3600),
                "i",
            ),
            70013,
        ),
        (
            login(
                8,
                "alice",
                &tim_usersig::generate(APP + 1, KEY, "alice", t, 3600),
                "i",
            ),
            70014,
        ),
        (
            login(
                9,
                "alice",
                &tim_usersig::generate(APP, KEY, "alice", t - 100, 50),
                "i",
            ),
            70001,
        ),
    ];
    for (frame, code) in cases {
        let ClientFrame::Login(l) = &frame else {
            unreachable!()
        };
        let seq = l.seq;
        send(&mut ws, &frame).await;
        let (got_seq, got_code, message) = recv_error(&mut ws).await;
        assert_eq!(
            (got_seq, got_code),
            (Some(seq), code),
            "case seq {seq}: {message}"
        );
        assert!(!message.is_empty());
        assert!(!message.contains(KEY));
    }
    assert!(server.state.registry().instances("alice").is_empty());
    // The same socket can still log in.
    let ok = login_ok(&mut ws, 10, "alice", "i").await;
    assert_eq!(ok.seq, 10);
}

#[tokio::test]
async fn guessed_usersigs_are_limited_per_user_and_address_and_never_block_a_valid_one() {
    // Behind a trusted proxy, so the test can speak from two client addresses.
    let server = Server::start(|c| {
        c.trusted_proxies = timd::client_addr::TrustedProxies::parse("127.0.0.1").unwrap()
    })
    .await;
    let mut attacker = server.connect_from("198.51.100.66").await;
    // Free garbage in alice's name costs no guess and is never limited.
    for seq in 0..30 {
        send(&mut attacker, &login(seq, "alice", "garbage", "i")).await;
        assert_eq!(recv_error(&mut attacker).await.1, 70003);
    }
    let wrong = tim_usersig::generate(APP, "wrong-key", "alice", now(), 3600);
    for seq in 0..10 {
        send(&mut attacker, &login(seq, "alice", &wrong, "i")).await;
        assert_eq!(recv_error(&mut attacker).await.1, 70009);
    }
    send(&mut attacker, &login(10, "alice", &wrong, "i")).await;
    let (seq, code, message) = recv_error(&mut attacker).await;
    assert_eq!((seq, code), (Some(10), 70050));
    assert_eq!(
        message,
        "too many failed UserSig checks, retry after a minute"
    );
    // Alice, from her own address, logs in and renews as usual.
    let mut alice = server.connect_from("203.0.113.5").await;
    login_ok(&mut alice, 1, "alice", "tab").await;
    send(
        &mut alice,
        &ClientFrame::Renew {
            seq: 2,
            usersig: sig("alice"),
        },
    )
    .await;
    assert!(matches!(
        recv(&mut alice).await,
        ServerFrame::RenewOk { seq: 2, .. }
    ));
    // Even from the limited address, a valid UserSig passes.
    login_ok(&mut attacker, 11, "alice", "other").await;
}

#[tokio::test]
async fn malformed_unknown_and_binary_frames_get_70402_and_the_socket_survives() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    for text in [
        "{not json",
        r#"{"hello":{}}"#,
        r#""pang""#,
        r#"{"login":{"seq":1}}"#,
        "[]",
    ] {
        send_text(&mut ws, text).await;
        let (seq, code, message) = recv_error(&mut ws).await;
        assert_eq!((seq, code), (None, 70402), "{text}");
        assert!(message.starts_with("invalid frame"), "{message}");
    }
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let (seq, code, message) = recv_error(&mut ws).await;
    assert_eq!((seq, code), (None, 70402));
    assert!(message.contains("binary"), "{message}");
    login_ok(&mut ws, 1, "alice", "i").await;
}

#[tokio::test]
async fn oversized_frame_closes_with_protocol() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    let big = format!("\"{}\"", "x".repeat(MAX_FRAME_BYTES));
    send_text(&mut ws, &big).await;
    assert_eq!(recv_close(&mut ws).await, close::PROTOCOL);
    wait_away(&server).await;
}

#[tokio::test]
async fn a_frame_of_exactly_the_maximum_size_is_accepted() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    let text = format!("\"{}\"", "x".repeat(MAX_FRAME_BYTES - 2));
    assert_eq!(text.len(), MAX_FRAME_BYTES);
    send_text(&mut ws, &text).await;
    assert_eq!(recv_error(&mut ws).await.1, 70402);
    send(&mut ws, &ClientFrame::Ping).await;
    assert_eq!(recv(&mut ws).await, ServerFrame::Pong);
}

#[tokio::test]
async fn login_timeout_sends_an_error_then_closes_4001() {
    // Long enough for the ping below to be answered first on a loaded machine.
    let server = Server::start(|c| c.login_timeout_ms = 1_000).await;
    let mut ws = server.connect().await;
    let started = tokio::time::Instant::now();
    // Frames other than a successful login do not extend the deadline.
    send(&mut ws, &ClientFrame::Ping).await;
    assert_eq!(recv(&mut ws).await, ServerFrame::Pong);
    let (seq, code, message) = recv_error(&mut ws).await;
    assert_eq!(
        (seq, code, message.as_str()),
        (None, 70402, "login timeout")
    );
    assert_eq!(recv_close(&mut ws).await, close::LOGIN_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn ping_pong() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    send_text(&mut ws, r#""ping""#).await;
    assert_eq!(recv(&mut ws).await, ServerFrame::Pong);
}

#[tokio::test]
async fn logout_removes_the_instance_and_restarts_the_login_deadline() {
    let server = Server::start(|c| c.login_timeout_ms = 300).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    let mut other = server.connect().await;
    login_ok(&mut other, 1, "alice", "j").await;

    send(&mut ws, &ClientFrame::Logout { seq: 2 }).await;
    assert_eq!(recv(&mut ws).await, ServerFrame::LogoutOk { seq: 2 });
    let online = server.state.registry().instances("alice");
    assert_eq!(online.len(), 1, "only the calling instance ends");
    assert_eq!(online[0].instance, "j");

    send(&mut ws, &ClientFrame::Logout { seq: 3 }).await;
    let (seq, code, message) = recv_error(&mut ws).await;
    assert_eq!(
        (seq, code, message.as_str()),
        (Some(3), 70402, "not logged in")
    );

    // Unauthenticated again: the login deadline applies.
    assert_eq!(recv_error(&mut ws).await.2, "login timeout");
    assert_eq!(recv_close(&mut ws).await, close::LOGIN_TIMEOUT);
}

#[tokio::test]
async fn relogin_on_the_same_socket_replaces_the_session() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    login_ok(&mut ws, 2, "bob", "i").await;
    assert!(server.state.registry().instances("alice").is_empty());
    assert_eq!(server.state.registry().instances("bob").len(), 1);
    // A failed re-login leaves the socket logged out.
    send(&mut ws, &login(3, "carol", "", "i")).await;
    assert_eq!(recv_error(&mut ws).await.1, 70002);
    assert!(server.state.registry().instances("bob").is_empty());
    assert_eq!(server.state.registry().online_count(), 0);
}

#[tokio::test]
async fn kick_delivers_kicked_then_closes_4002() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "tab-1").await;
    let mut other = server.connect().await;
    login_ok(&mut other, 1, "alice", "tab-2").await;

    assert!(server
        .state
        .registry()
        .kick("alice", "tab-1", KickReason::MultipleAccount));
    assert_eq!(
        recv(&mut ws).await,
        ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        }
    );
    assert_eq!(recv_close(&mut ws).await, close::KICKED);
    let online = server.state.registry().instances("alice");
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].instance, "tab-2");
    // The other instance still works.
    send(&mut other, &ClientFrame::Ping).await;
    assert_eq!(recv(&mut other).await, ServerFrame::Pong);

    assert_eq!(
        server
            .state
            .registry()
            .kick_user("alice", KickReason::RestApi),
        1
    );
    assert_eq!(
        recv(&mut other).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    assert_eq!(recv_close(&mut other).await, close::KICKED);
    assert_eq!(server.state.registry().online_count(), 0);
}

#[tokio::test]
async fn same_instance_on_a_new_socket_supersedes_the_old_socket() {
    let server = Server::start(|_| {}).await;
    let mut old = server.connect().await;
    login_ok(&mut old, 1, "alice", "tab-1").await;
    let mut new = server.connect().await;
    let ok = login_ok(&mut new, 1, "alice", "tab-1").await;
    assert_eq!(recv_close(&mut old).await, close::SUPERSEDED);
    let online = server.state.registry().instances("alice");
    assert_eq!(online.len(), 1);
    let claims = server
        .state
        .apps()
        .default_app()
        .tickets()
        .verify(&ok.ticket, now())
        .unwrap();
    assert_eq!(
        online[0].since_ms, claims.since_ms,
        "the new socket keeps the slot"
    );
    assert!(online[0].attached);
}

#[tokio::test]
async fn socket_close_keeps_the_slot_for_the_grace_period_only() {
    let server = Server::start(|c| c.resume_grace_ms = 0).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    assert!(server.state.registry().is_online("alice", "i"));
    ws.close(None).await.unwrap();
    drop(ws);
    eventually("instance away", || {
        server
            .state
            .registry()
            .instances("alice")
            .first()
            .is_some_and(|i| !i.attached)
    })
    .await;
    // The sweeper frees it once the (zero) grace period is over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.state.registry().is_online("alice", "i") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot freed after the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.state.registry().online_count(), 0);
}

#[tokio::test]
async fn first_login_registers_the_account_durably() {
    let server = Server::start(|_| {}).await;
    let data_dir = server.state.config().data_dir.clone();
    assert!(!Store::open_in(&data_dir, APP)
        .unwrap()
        .account_exists(APP, "alice")
        .unwrap());
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "i").await;
    // Answered only after the commit: a fresh connection to the file sees it already.
    let store = Store::open_in(&data_dir, APP).unwrap();
    assert!(store.account_exists(APP, "alice").unwrap());
    assert!(!store.account_exists(APP, "bob").unwrap());
    // A failed login registers nothing.
    send(&mut ws, &login(2, "bob", "garbage", "i")).await;
    assert_eq!(recv_error(&mut ws).await.1, 70003);
    assert!(!store.account_exists(APP, "bob").unwrap());
    assert_eq!(
        server.state.store().account_exists(APP, "alice").await,
        Ok(true)
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_with_service_restart() {
    let mut server = Server::start(|_| {}).await;
    let mut logged_in = server.connect().await;
    login_ok(&mut logged_in, 1, "alice", "i").await;
    let mut anonymous = server.connect().await;
    let stopping = tokio::time::Instant::now();
    let (a, b, ()) = tokio::join!(
        recv_close(&mut logged_in),
        recv_close(&mut anonymous),
        server.stop()
    );
    assert_eq!((a, b), (close::SERVICE_RESTART, close::SERVICE_RESTART));
    // Without waiting out any socket's timeout (the login timeout, 5 s by default, for the
    // anonymous one); the bound leaves room for a loaded machine.
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    // Still resumable with its ticket (on this process or the next): only detached.
    assert!(server
        .state
        .registry()
        .instances("alice")
        .iter()
        .all(|i| !i.attached));
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
            .await
            .is_err()
    );
}

/// The socket's UserSig expires while the registry no longer knows its session (its kick
/// command lost): the socket still ends with `userSigExpired`, instead of spinning on an
/// elapsed timer until the heartbeat timeout.
#[tokio::test]
async fn an_expiry_the_registry_forgot_still_ends_the_session() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    let short = tim_usersig::generate(APP, KEY, "alice", now() - 3598, 3600);
    send(&mut ws, &login(1, "alice", &short, "tab")).await;
    assert!(matches!(recv(&mut ws).await, ServerFrame::LoginOk(_)));
    let info = server.state.registry().instances("alice")[0].clone();
    assert!(server
        .state
        .registry()
        .remove("alice", info.session)
        .is_some());
    assert_eq!(
        recv(&mut ws).await,
        ServerFrame::Kicked {
            reason: KickReason::UserSigExpired
        }
    );
    assert_eq!(recv_close(&mut ws).await, close::KICKED);
}
