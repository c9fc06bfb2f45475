//! Losing and regaining the connection, in virtual time: resume with the ticket, kicked
//! while away, falling back to a login, backoff bounds, offline / wake, destroy and logout
//! mid-reconnect.

mod common;

use common::{drain_events, drain_io, login_ok};
use tim_proto::*;
use tim_session::*;

const APP: u32 = 1_400_000_000;

/// A session logged in as alice at t=0 with ticket "T1"; queues drained.
fn online() -> Session {
    let mut s = Session::new(Config::new(APP, Platform::Web, "tab-1".into()));
    s.login(0, "alice", "sig-1");
    s.handle_open(0);
    let seq = match &drain_io(&mut s)[..] {
        [Io::Connect, Io::Send(ClientFrame::Login(l))] => l.seq,
        other => panic!("{other:?}"),
    };
    s.handle_frame(0, login_ok(seq, "T1"));
    drain_events(&mut s);
    s
}

/// Drives the session to its next reconnect attempt and returns when it happened.
fn next_attempt(s: &mut Session) -> Millis {
    let at = s.poll_timeout().expect("a retry is scheduled");
    s.handle_timeout(at);
    assert_eq!(drain_io(s), vec![Io::Connect], "at {at}");
    at
}

/// Online, then the connection drops and the resume's ticket is refused: the session sends
/// a login with its kept UserSig. Returns the session, the time, and that login.
fn falling_back_to_login() -> (Session, Millis, Login) {
    let mut s = online();
    s.handle_close(1_000, 1006);
    let at = next_attempt(&mut s);
    s.handle_open(at);
    let seq = resume_seq(&drain_io(&mut s));
    let refused = ErrorFrame {
        seq: Some(seq),
        code: 70402,
        message: String::new(),
    };
    s.handle_frame(at, ServerFrame::Error(refused));
    let Io::Send(ClientFrame::Login(l)) = drain_io(&mut s).remove(0) else {
        panic!("expected the fallback login")
    };
    drain_events(&mut s);
    (s, at, l)
}

fn resume_seq(io: &[Io]) -> u32 {
    match io {
        [Io::Send(ClientFrame::Resume { seq, ticket })] => {
            assert_eq!(ticket, "T1");
            *seq
        }
        other => panic!("expected a resume, got {other:?}"),
    }
}

#[test]
fn lost_connection_resumes_with_the_ticket_and_the_page_sees_only_net_state() {
    let mut s = online();
    s.handle_close(1_000, 1006);
    assert_eq!(drain_io(&mut s), vec![]);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)]
    );
    assert!(s.is_ready(), "still logged in while reconnecting");
    assert!(!s.is_connected());
    assert_eq!(s.login_user(), "alice");

    let at = next_attempt(&mut s);
    assert!(
        (1_500..=2_000).contains(&at),
        "first retry after 0.5..1 s: {at}"
    );
    s.handle_open(at + 5);
    let seq = resume_seq(&drain_io(&mut s));
    s.handle_frame(
        at + 9,
        ServerFrame::ResumeOk {
            seq,
            heartbeat_ms: 30_000,
            expire_at: 2_000_000_001,
            expires_in: 3_600,
        },
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connected)]
    );
    assert!(s.is_connected());
    assert_eq!(s.expire_at(), Some(2_000_000_001));
    assert_eq!(
        s.poll_timeout(),
        Some(at + 9 + dead_after(30_000)),
        "the dead-server check at the new interval"
    );
}

#[test]
fn every_way_of_losing_the_connection_reconnects() {
    for code in [
        1006,
        1001,
        1011,
        close::SERVICE_RESTART,
        close::HEARTBEAT_TIMEOUT,
        close::PROTOCOL,
    ] {
        let mut s = online();
        s.handle_close(10, code);
        next_attempt(&mut s);
    }
}

#[test]
fn kicked_while_away_learns_it_on_resume_and_stays_out() {
    let mut s = online();
    s.handle_close(1_000, 1006);
    let at = next_attempt(&mut s);
    s.handle_open(at);
    drain_io(&mut s);
    drain_events(&mut s);
    s.handle_frame(
        at + 1,
        ServerFrame::Kicked {
            reason: KickReason::MultipleAccount,
        },
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::Kicked(KickReason::MultipleAccount), Event::NotReady]
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert_eq!(s.poll_timeout(), None, "no retry after a kick");
    s.handle_timeout(10_000_000);
    s.handle_wake(10_000_001);
    assert_eq!(drain_io(&mut s), vec![]);
    assert!(!s.is_ready());
}

#[test]
fn refused_ticket_falls_back_to_a_login_with_the_kept_usersig() {
    let mut s = online();
    s.login(500, "alice", "sig-2"); // repeat login: the newer UserSig is kept
    drain_events(&mut s);
    s.handle_close(1_000, 1006);
    let at = next_attempt(&mut s);
    s.handle_open(at);
    let seq = resume_seq(&drain_io(&mut s));
    drain_events(&mut s);
    s.handle_frame(
        at,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            code: 70402,
            message: "ticket expired".into(),
        }),
    );
    let io = drain_io(&mut s);
    let Io::Send(ClientFrame::Login(l)) = &io[0] else {
        panic!("{io:?}")
    };
    assert_eq!(
        (l.user.as_str(), l.usersig.as_str(), l.instance.as_str()),
        ("alice", "sig-2", "tab-1")
    );
    s.handle_frame(
        at + 1,
        ServerFrame::LoginOk(LoginOk {
            seq: l.seq,
            ticket: "T2".into(),
            heartbeat_ms: 25_000,
            expire_at: 9,
            expires_in: 9,
        }),
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connected)],
        "no second SDK_READY"
    );
    assert_eq!(s.ticket(), Some("T2"));
}

#[test]
fn an_expired_usersig_on_the_fallback_login_ends_with_usersig_expired() {
    let (mut s, at, l) = falling_back_to_login();
    s.handle_frame(
        at,
        ServerFrame::Error(ErrorFrame {
            seq: Some(l.seq),
            code: 70001,
            message: "expired".into(),
        }),
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::Kicked(KickReason::UserSigExpired), Event::NotReady]
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn another_fallback_login_failure_ends_the_session_with_an_error() {
    let (mut s, at, l) = falling_back_to_login();
    s.handle_frame(
        at,
        ServerFrame::Error(ErrorFrame {
            seq: Some(l.seq),
            code: 70009,
            message: "bad sig".into(),
        }),
    );
    assert_eq!(
        drain_events(&mut s),
        vec![
            Event::Error(SdkError::new(70009, "bad sig")),
            Event::NotReady
        ]
    );
    assert!(!s.is_ready());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn failed_attempts_back_off_exponentially_with_jitter_up_to_the_cap() {
    let mut s = online();
    let mut now = 0;
    s.handle_close(now, 1006);
    let mut waits = Vec::new();
    for _ in 0..12 {
        let at = next_attempt(&mut s);
        waits.push(at - now);
        now = at;
        s.handle_close(now, 1006); // the connection attempt fails
    }
    for (attempt, w) in waits.iter().enumerate() {
        let cap = (500u64 << (attempt + 1)).min(20_000);
        assert!(
            (500..=cap).contains(w),
            "attempt {attempt}: waited {w}, cap {cap}"
        );
    }
    assert!(
        waits[8..].iter().any(|&w| w > 5_000),
        "grows towards the cap: {waits:?}"
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)],
        "reported once"
    );
}

#[test]
fn a_resume_without_answer_retries_on_a_new_connection() {
    let mut s = online();
    s.handle_close(0, 1006);
    let at = next_attempt(&mut s);
    s.handle_open(at);
    drain_io(&mut s);
    s.handle_timeout(at + 10_000);
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    next_attempt(&mut s);
}

#[test]
fn offline_waits_for_the_network_and_online_retries_at_once() {
    let mut s = online();
    s.handle_offline(100);
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Disconnected)]
    );
    assert_eq!(s.poll_timeout(), None, "no retries while offline");
    assert!(s.is_ready());
    s.handle_wake(30_000); // the tab became visible: still offline, nothing to try
    assert_eq!(drain_io(&mut s), vec![]);
    s.handle_online(60_000);
    assert_eq!(drain_io(&mut s), vec![Io::Connect], "at once");
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)]
    );
}

#[test]
fn waking_up_probes_a_connection_that_looks_up() {
    let mut s = online();
    s.handle_wake(1_000);
    assert_eq!(drain_io(&mut s), vec![Io::Send(ClientFrame::Ping)]);
    assert_eq!(s.poll_timeout(), Some(1_000 + WAKE_PROBE_MS));
    s.handle_timeout(1_000 + WAKE_PROBE_MS);
    assert_eq!(drain_io(&mut s), vec![Io::Close], "no answer: dead");
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)]
    );
    // Whereas an answer keeps it.
    let mut s = online();
    s.handle_wake(1_000);
    drain_io(&mut s);
    s.handle_frame(1_100, ServerFrame::Pong);
    s.handle_timeout(1_000 + WAKE_PROBE_MS);
    assert_eq!(drain_io(&mut s), vec![]);
    assert!(s.is_connected());
}

#[test]
fn waking_while_waiting_retries_now() {
    let mut s = online();
    s.handle_close(0, 1006);
    drain_events(&mut s);
    s.handle_wake(10);
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
}

#[test]
fn destroy_mid_reconnect_cancels_it_cleanly() {
    for opening in [false, true] {
        let mut s = online();
        s.handle_close(0, 1006);
        if opening {
            next_attempt(&mut s);
        }
        drain_events(&mut s);
        let op = s.destroy(5);
        let io = drain_io(&mut s);
        assert_eq!(io, if opening { vec![Io::Close] } else { vec![] });
        assert_eq!(
            drain_events(&mut s),
            vec![
                Event::NotReady,
                Event::Destroyed,
                Event::Done {
                    op,
                    result: Ok(OpOk::Destroy)
                }
            ]
        );
        assert_eq!(s.poll_timeout(), None, "the retry is cancelled");
        s.handle_timeout(1_000_000);
        s.handle_wake(1_000_001);
        assert_eq!(drain_io(&mut s), vec![]);
    }
}

#[test]
fn logout_mid_reconnect_completes_locally() {
    let mut s = online();
    s.handle_close(0, 1006);
    drain_events(&mut s);
    let op = s.logout(5);
    assert_eq!(drain_io(&mut s), vec![]);
    assert_eq!(
        drain_events(&mut s),
        vec![
            Event::NotReady,
            Event::Done {
                op,
                result: Ok(OpOk::Logout)
            }
        ]
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn superseded_by_another_tab_with_the_same_id_steps_aside() {
    let mut s = online();
    s.handle_close(0, close::SUPERSEDED);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::Kicked(KickReason::MultipleAccount), Event::NotReady]
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn same_user_login_while_reconnecting_is_a_repeat_login() {
    let mut s = online();
    s.handle_close(0, 1006);
    drain_events(&mut s);
    let op = s.login(1, "alice", "sig-3");
    assert_eq!(
        drain_events(&mut s),
        vec![Event::Done {
            op,
            result: Ok(OpOk::Login { repeat: true })
        }]
    );
    let op = s.login(2, "bob", "sig-b");
    assert_eq!(drain_io(&mut s), vec![Io::Connect], "switch: a fresh login");
    assert_eq!(drain_events(&mut s), vec![Event::NotReady]);
    s.handle_open(3);
    let io = drain_io(&mut s);
    let seq = match &io[..] {
        [Io::Send(ClientFrame::Login(l))] if l.user == "bob" && l.usersig == "sig-b" => l.seq,
        other => panic!("expected bob's login, got {other:?}"),
    };
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connected)]
    );
    s.handle_frame(
        4,
        ServerFrame::LoginOk(LoginOk {
            seq,
            ticket: "TB".into(),
            heartbeat_ms: 25_000,
            expire_at: 2_000_000_000,
            expires_in: 3_600,
        }),
    );
    assert_eq!(
        drain_events(&mut s),
        vec![
            Event::Done {
                op,
                result: Ok(OpOk::Login { repeat: false })
            },
            Event::Ready
        ],
        "the switch settles as a fresh login of bob"
    );
    assert!(s.is_ready());
    assert_eq!(s.login_user(), "bob");
    assert_eq!(s.ticket(), Some("TB"));
}

#[test]
fn login_while_offline_fails_with_no_network_and_works_once_online() {
    let mut s = Session::new(Config::new(APP, Platform::Web, "tab".into()));
    s.handle_offline(0);
    let op = s.login(1, "alice", "sig");
    assert_eq!(drain_io(&mut s), vec![], "no attempt");
    assert_eq!(
        drain_events(&mut s),
        vec![Event::Done {
            op,
            result: Err(SdkError::new(
                SDK_NO_NETWORK,
                "no network: the browser is offline"
            ))
        }]
    );
    s.handle_online(2);
    s.login(3, "alice", "sig");
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
}

#[test]
fn a_reconnect_that_never_opens_is_given_up_and_retried() {
    let mut s = online();
    s.handle_close(0, 1006);
    let at = next_attempt(&mut s);
    // No open, no close: the handshake is black-holed.
    assert_eq!(s.poll_timeout(), Some(at + 10_000));
    s.handle_timeout(at + 10_000);
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    next_attempt(&mut s);
}
