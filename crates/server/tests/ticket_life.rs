//! Tickets die with their session: after a logout, a kick (even once its tombstone is
//! gone), a newer login of the same instance, or the ticket's lifetime, a copied ticket no
//! longer resumes — in this process and after a restart. The SDK's core, refused, logs in
//! again with its UserSig, which is legitimate.

mod common;

use std::time::Duration;

use common::*;
use tim_client::{Client, Config as ClientConfig, Event, NetState};
use tim_proto::{ClientFrame, KickReason, Platform, ServerFrame};

fn resume(seq: u32, ticket: &str) -> ClientFrame {
    ClientFrame::Resume {
        seq,
        ticket: ticket.into(),
    }
}

/// Presents `ticket` on a new socket; `Ok` if it resumed, else the refusal frame.
async fn try_resume(server: &Server, ticket: &str) -> Result<(), ServerFrame> {
    let mut ws = server.connect().await;
    send(&mut ws, &resume(7, ticket)).await;
    match recv(&mut ws).await {
        ServerFrame::ResumeOk { seq: 7, .. } => Ok(()),
        other => Err(other),
    }
}

fn is_error(frame: &ServerFrame) -> bool {
    matches!(frame, ServerFrame::Error(e) if e.seq == Some(7))
}

async fn logout(ws: &mut Ws, seq: u32) {
    send(ws, &ClientFrame::Logout { seq }).await;
    assert_eq!(recv(ws).await, ServerFrame::LogoutOk { seq });
}

#[tokio::test]
async fn a_logged_out_ticket_is_dead_even_after_a_restart() {
    let mut first = Server::start(|_| {}).await;
    let mut ws = first.connect().await;
    let ok = login_ok(&mut ws, 1, "alice", "tab").await;
    logout(&mut ws, 2).await;
    let refused = try_resume(&first, &ok.ticket).await.unwrap_err();
    assert!(is_error(&refused), "{refused:?}");
    assert!(first.state.registry().instances("alice").is_empty());
    first.stop().await;
    let second = Server::start_in(first.dir, |_| {}).await;
    let refused = try_resume(&second, &ok.ticket).await.unwrap_err();
    assert!(is_error(&refused), "after a restart: {refused:?}");
    assert!(second.state.registry().instances("alice").is_empty());
}

#[tokio::test]
async fn a_replaced_sessions_ticket_is_dead_after_the_new_one_logs_out() {
    let server = Server::start(|_| {}).await;
    let mut old = server.connect().await;
    let first = login_ok(&mut old, 1, "alice", "tab").await;
    // The same instance logs in again elsewhere (a reload), then logs out.
    let mut new = server.connect().await;
    login_ok(&mut new, 1, "alice", "tab").await;
    logout(&mut new, 2).await;
    // Refused as a kicked one is (docs/security.md): an error would make its holder log in
    // again and take the slot back.
    assert_eq!(
        try_resume(&server, &first.ticket).await,
        Err(ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        })
    );
    assert!(server.state.registry().instances("alice").is_empty());
}

#[tokio::test]
async fn a_kicked_ticket_stays_dead_once_its_tombstone_is_gone() {
    let server = Server::start(|c| {
        c.login.web_instances = 1;
        // 41 logins of one user at once: beyond the default per-user rate.
        c.limits.login_rate_per_user = 0;
    })
    .await;
    let mut a = server.connect().await;
    let victim = login_ok(&mut a, 1, "alice", "victim").await;
    // 40 more logins, each kicking the one before: the victim's tombstone is long gone.
    let mut last = None;
    for i in 0..40 {
        let mut ws = server.connect().await;
        login_ok(&mut ws, 1, "alice", &format!("tab{i}")).await;
        last = Some(ws);
    }
    // Room again: nothing stands in the victim's way but the end of its session.
    logout(last.as_mut().unwrap(), 2).await;
    let refused = try_resume(&server, &victim.ticket).await.unwrap_err();
    assert!(
        is_error(&refused) || matches!(refused, ServerFrame::Kicked { .. }),
        "{refused:?}"
    );
    assert!(server.state.registry().instances("alice").is_empty());
}

#[tokio::test]
async fn a_kicked_ticket_stays_dead_after_a_restart() {
    let mut first = Server::start(|c| c.login.web_instances = 1).await;
    let mut a = first.connect().await;
    let victim = login_ok(&mut a, 1, "alice", "victim").await;
    let mut b = first.connect().await;
    login_ok(&mut b, 1, "alice", "other").await;
    logout(&mut b, 2).await;
    first.stop().await;
    let second = Server::start_in(first.dir, |c| c.login.web_instances = 1).await;
    assert_eq!(
        try_resume(&second, &victim.ticket).await,
        Err(ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        })
    );
}

#[tokio::test]
async fn a_ticket_past_its_lifetime_is_refused_even_with_its_slot_held() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.connect().await;
    login_ok(&mut ws, 1, "alice", "tab").await;
    let info = server.state.registry().instances("alice")[0].clone();
    go_away(&server, ws).await;
    let stale = server
        .state
        .apps()
        .default_app()
        .tickets()
        .issue(&info.ticket_claims(now() - 1));
    let refused = try_resume(&server, &stale).await.unwrap_err();
    assert!(is_error(&refused), "{refused:?}");
    // The same session's live ticket still works.
    let fresh = server
        .state
        .apps()
        .default_app()
        .tickets()
        .issue(&info.ticket_claims(now() + 60));
    assert_eq!(try_resume(&server, &fresh).await, Ok(()));
}

/// The session core, told its ticket is dead, logs in again with its UserSig: the page
/// sees a reconnect and nothing else.
#[tokio::test]
async fn a_client_whose_ticket_died_logs_in_again_with_its_usersig() {
    let server = Server::start(|c| c.ticket_lifetime_secs = 1).await;
    let url = format!("ws://{}", server.addr);
    let mut client = Client::new(&url, ClientConfig::new(APP, Platform::Web, "tab".into()));
    let handle = client.handle().clone();
    handle.login("alice", &sig("alice")).await.unwrap();
    client
        .wait_for(WAIT, |e| matches!(e, Event::Ready))
        .await
        .unwrap();
    let first_login = handle.last_login_sent().expect("the login went out");
    let since = server.state.registry().instances("alice")[0].since_ms;
    // The ticket's lifetime (1 s, whole seconds) is over.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    handle.drop_connection();
    client
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::NetState(NetState::Connected))
        })
        .await
        .unwrap();
    let status = handle.status().await.unwrap();
    assert!(status.ready && status.connected, "{status:?}");
    // Back by a login (a new session of the instance), not a resume of the old one.
    assert!(
        handle.last_login_sent() > Some(first_login),
        "a second login frame went out"
    );
    let now = server.state.registry().instances("alice");
    assert_eq!(now.len(), 1);
    assert!(
        now[0].since_ms > since,
        "a new session, not the resumed one"
    );
    assert!(server.state.registry().is_online("alice", "tab"));
    while let Some(event) = client.try_next_event() {
        assert!(
            !matches!(event, Event::NotReady | Event::Kicked(_) | Event::Ready),
            "the page saw {event:?}"
        );
    }
}
