//! Resume and renewal over real sockets: a reconnect presenting its ticket gets its own slot
//! back without kicking anyone; a kicked-while-away instance learns why; a restarted server
//! still honours tickets; a fresh UserSig extends a session under a new ticket.

mod common;

use std::time::Duration;

use common::*;
use tim_proto::{close, ClientFrame, KickReason, ServerFrame};

fn resume(seq: u32, ticket: &str) -> ClientFrame {
    ClientFrame::Resume {
        seq,
        ticket: ticket.into(),
    }
}

#[tokio::test]
async fn a_reconnect_resumes_its_own_slot_and_counts_once() {
    let server = Server::start(|c| c.login.web_instances = 2).await;
    let mut a = server.connect().await;
    let ok = login_ok(&mut a, 1, "alice", "tab-a").await;
    let mut b = server.connect().await;
    login_ok(&mut b, 1, "alice", "tab-b").await;
    go_away(&server, a).await;
    let mut a2 = server.connect().await;
    send(&mut a2, &resume(2, &ok.ticket)).await;
    match recv(&mut a2).await {
        ServerFrame::ResumeOk {
            seq,
            expire_at,
            expires_in,
            ..
        } => {
            assert_eq!((seq, expire_at), (2, ok.expire_at));
            assert!(expires_in <= ok.expires_in && expires_in + 5 >= ok.expires_in);
        }
        other => panic!("expected resume_ok, got {other:?}"),
    }
    let online = server.state.registry().instances("alice");
    assert_eq!(online.len(), 2, "counted once");
    assert!(online.iter().all(|i| i.attached));
    assert_eq!(
        online[0].instance, "tab-a",
        "its original place in the login order"
    );
    // b saw nothing.
    send(&mut b, &ClientFrame::Ping).await;
    assert_eq!(recv(&mut b).await, ServerFrame::Pong);
}

#[tokio::test]
async fn kicked_while_away_gets_the_kick_on_resume_and_the_newer_keeps_the_slot() {
    let server = Server::start(|c| c.login.web_instances = 1).await;
    let mut a = server.connect().await;
    let ok = login_ok(&mut a, 1, "alice", "tab-a").await;
    go_away(&server, a).await;
    let mut b = server.connect().await;
    login_ok(&mut b, 1, "alice", "tab-b").await;
    let mut a2 = server.connect().await;
    send(&mut a2, &resume(2, &ok.ticket)).await;
    assert_eq!(
        recv(&mut a2).await,
        ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        }
    );
    assert_eq!(recv_close(&mut a2).await, close::KICKED);
    let online = server.state.registry().instances("alice");
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].instance, "tab-b");
    send(&mut b, &ClientFrame::Ping).await;
    assert_eq!(recv(&mut b).await, ServerFrame::Pong);
}

#[tokio::test]
async fn a_forged_or_foreign_ticket_is_an_error_and_the_socket_stays_usable() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    for bad in ["", "garbage", "a.b"] {
        send(&mut ws, &resume(3, bad)).await;
        let (seq, code, _) = recv_error(&mut ws).await;
        assert_eq!((seq, code), (Some(3), 70402));
    }
    let foreign =
        timd::ticket::Tickets::new("another-app-key").issue(&timd::ticket::TicketClaims {
            app: APP,
            user: "alice".into(),
            instance: "x".into(),
            platform: tim_proto::Platform::Web,
            since_ms: 1,
            expire_at: u64::MAX,
            sig_time: 1,
            valid_until: u64::MAX,
        });
    send(&mut ws, &resume(4, &foreign)).await;
    assert_eq!(recv_error(&mut ws).await.1, 70402);
    login_ok(&mut ws, 5, "alice", "x").await;
}

#[tokio::test]
async fn tickets_survive_a_server_restart() {
    let mut first = Server::start(|_| {}).await;
    let mut ws = first.connect().await;
    let ok = login_ok(&mut ws, 1, "alice", "tab").await;
    let (code, ()) = tokio::join!(recv_close(&mut ws), first.stop());
    assert_eq!(code, close::SERVICE_RESTART);
    // A new process (fresh registry) with the same app key and data.
    let second = Server::start_in(first.dir, |_| {}).await;
    let mut ws = second.connect().await;
    send(&mut ws, &resume(2, &ok.ticket)).await;
    assert!(matches!(
        recv(&mut ws).await,
        ServerFrame::ResumeOk { seq: 2, .. }
    ));
    assert!(second.state.registry().is_online("alice", "tab"));
}

#[tokio::test]
async fn a_fresh_usersig_renews_the_session_under_a_new_ticket() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    let t = now();
    // One to two seconds of validity left (whole seconds: one alone could run out between
    // this line and the server's check).
    let short = tim_usersig::generate(APP, KEY, "alice", t - 3598, 3600);
    send(&mut ws, &login(1, "alice", &short, "tab")).await;
    let ServerFrame::LoginOk(ok) = recv(&mut ws).await else {
        panic!("login_ok")
    };
    assert!(ok.expires_in <= 2);
    let fresh = tim_usersig::generate(APP, KEY, "alice", t, 7200);
    send(
        &mut ws,
        &ClientFrame::Renew {
            seq: 2,
            usersig: fresh,
        },
    )
    .await;
    let ServerFrame::RenewOk {
        seq,
        ticket,
        expire_at,
        expires_in,
    } = recv(&mut ws).await
    else {
        panic!("renew_ok")
    };
    assert_eq!((seq, expire_at), (2, t + 7200));
    assert!(expires_in > 7000);
    assert_ne!(ticket, ok.ticket);
    assert_eq!(
        server
            .state
            .apps()
            .default_app()
            .tickets()
            .verify(&ticket, t)
            .unwrap()
            .expire_at,
        t + 7200
    );
    // Past the first UserSig's expiry the session is still up.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    send(&mut ws, &ClientFrame::Ping).await;
    assert_eq!(recv(&mut ws).await, ServerFrame::Pong);
    assert!(server.state.registry().is_online("alice", "tab"));
}

#[tokio::test]
async fn a_bad_renewal_is_refused_with_its_code_and_expiry_then_ends_the_session() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    send(
        &mut ws,
        &ClientFrame::Renew {
            seq: 1,
            usersig: sig("alice"),
        },
    )
    .await;
    assert_eq!(
        recv_error(&mut ws).await,
        (Some(1), 70402, "not logged in".into())
    );
    let t = now();
    let short = tim_usersig::generate(APP, KEY, "alice", t - 3598, 3600);
    send(&mut ws, &login(2, "alice", &short, "tab")).await;
    assert!(matches!(recv(&mut ws).await, ServerFrame::LoginOk(_)));
    send(
        &mut ws,
        &ClientFrame::Renew {
            seq: 3,
            usersig: sig("bob"),
        },
    )
    .await;
    assert_eq!(recv_error(&mut ws).await.1, 70013);
    assert_eq!(
        recv(&mut ws).await,
        ServerFrame::Kicked {
            reason: KickReason::UserSigExpired
        }
    );
    assert_eq!(recv_close(&mut ws).await, close::KICKED);
}

#[tokio::test]
async fn a_rest_kick_while_away_is_learned_on_resume() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    let t = now();
    let usersig = tim_usersig::generate(APP, KEY, "alice", t - 10, 3600);
    send(&mut ws, &login(1, "alice", &usersig, "tab")).await;
    let ServerFrame::LoginOk(ok) = recv(&mut ws).await else {
        panic!("login_ok")
    };
    go_away(&server, ws).await;
    // What the REST kick does first: revoke every UserSig issued up to now.
    server.state.embedded().kicks(APP).record("alice", t - 5);
    let mut ws = server.connect().await;
    send(&mut ws, &resume(2, &ok.ticket)).await;
    assert_eq!(
        recv(&mut ws).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    assert_eq!(recv_close(&mut ws).await, close::KICKED);
}

/// A ticket past its lifetime (a tab asleep for a day) still cannot take the slot back:
/// the answer is the kick, not an error the client would answer with a fresh login.
#[tokio::test]
async fn an_old_ticket_of_a_kicked_instance_still_gets_its_kick() {
    let server = Server::start(|c| c.login.web_instances = 1).await;
    let mut a = server.connect().await;
    login_ok(&mut a, 1, "alice", "tab-a").await;
    let a_info = server.state.registry().instances("alice")[0].clone();
    go_away(&server, a).await;
    let mut b = server.connect().await;
    login_ok(&mut b, 1, "alice", "tab-b").await;
    let old = server
        .state
        .apps()
        .default_app()
        .tickets()
        .issue(&timd::ticket::TicketClaims {
            app: APP,
            user: "alice".into(),
            instance: "tab-a".into(),
            platform: tim_proto::Platform::Web,
            since_ms: a_info.since_ms,
            expire_at: a_info.expire_at,
            sig_time: a_info.sig_time,
            valid_until: now() - 1,
        });
    let mut a2 = server.connect().await;
    send(&mut a2, &resume(1, &old)).await;
    assert_eq!(
        recv(&mut a2).await,
        ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        }
    );
    send(&mut b, &ClientFrame::Ping).await;
    assert_eq!(recv(&mut b).await, ServerFrame::Pong, "b untouched");
}
