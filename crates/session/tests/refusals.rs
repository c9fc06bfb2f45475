//! The server reached and refusing, in virtual time: the abuse limits right after the
//! handshake (close 4006-4010), 1013 (try again later) and the put-off logins (70050 with
//! close 4010, 70169). A login rejects with the refusal's own code; an online session
//! reports it as one `ERROR` and backs off, except for a refused origin, which ends it.

mod common;

use common::{drain_events, drain_io, failure, login_ok};
use tim_proto::*;
use tim_session::*;

const APP: u32 = 1_400_000_000;
const SERVER: &str = "ws://127.0.0.1:9000/ws";
const ORIGIN: &str = "http://127.0.0.1:8080";

fn session() -> Session {
    let mut s = Session::new(Config::new(APP, Platform::Web, "tab-1".into()));
    s.set_endpoint(SERVER.into(), ORIGIN.into());
    s
}

/// The session's login frame after `handle_open`.
fn sent_login(s: &mut Session) -> u32 {
    match drain_io(s).as_slice() {
        [.., Io::Send(ClientFrame::Login(l))] => l.seq,
        other => panic!("expected a login frame, got {other:?}"),
    }
}

/// A login under way at t=0 whose socket just opened; returns the op and the login's seq.
fn logging_in() -> (Session, OpId, u32) {
    let mut s = session();
    let op = s.login(0, "alice", "sig");
    s.handle_open(1);
    let seq = sent_login(&mut s);
    drain_events(&mut s);
    (s, op, seq)
}

/// A session online as alice at t=0 (ticket "T1"), queues drained.
fn online() -> Session {
    let (mut s, _, seq) = logging_in();
    s.handle_frame(2, login_ok(seq, "T1"));
    drain_events(&mut s);
    assert!(s.is_ready());
    s
}

fn errors(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => Some(e.code),
            _ => None,
        })
        .collect()
}

/// Drives an online session whose connection dropped to its next attempt, through the
/// backoff delay, until its resume is out: returns when, and the resume's seq.
fn attempt(s: &mut Session) -> (Millis, u32) {
    let at = s.poll_timeout().expect("a retry is scheduled");
    s.handle_timeout(at);
    assert_eq!(drain_io(s), vec![Io::Connect], "at {at}");
    s.handle_open(at);
    match drain_io(s).as_slice() {
        [Io::Send(ClientFrame::Resume { seq, .. })] => (at, *seq),
        other => panic!("expected a resume, got {other:?}"),
    }
}

fn next_attempt(s: &mut Session) -> Millis {
    attempt(s).0
}

/// Online, the connection lost at 1 s, the first reconnect's resume out: when, and its seq.
fn reconnecting() -> (Session, Millis, u32) {
    let mut s = online();
    s.handle_close(1_000, 1006);
    drain_events(&mut s);
    let (at, seq) = attempt(&mut s);
    (s, at, seq)
}

const REFUSALS: [(u16, u32); 5] = [
    (close::ORIGIN_NOT_ALLOWED, SDK_ORIGIN_NOT_ALLOWED),
    (close::SERVER_FULL, SDK_SERVER_FULL),
    (close::TOO_MANY_CONNECTIONS, SDK_TOO_MANY_CONNECTIONS),
    (close::CONNECTION_RATE, SDK_CONNECTING_TOO_FAST),
    (close::TRY_AGAIN_LATER, SDK_SERVER_UNAVAILABLE),
];

#[test]
fn a_login_refused_right_after_the_handshake_rejects_with_the_refusals_own_code() {
    for (close, code) in REFUSALS {
        let (mut s, op, _) = logging_in();
        s.handle_close(3, close);
        let events = drain_events(&mut s);
        let e = failure(&events, op);
        assert_eq!(e.code, code, "close {close}: {e:?}");
        assert!(!e.message.contains("cannot reach"), "{e:?}");
        assert_eq!(events[0], Event::NetState(NetState::Disconnected));
        // The page decides what next: nothing is retried, nothing is pending.
        assert_eq!(s.poll_timeout(), None, "close {close}");
        assert_eq!(drain_io(&mut s), vec![]);
        assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_OUT);
        assert!(
            errors(&events).is_empty(),
            "a login's refusal is its rejection, not an ERROR"
        );
    }
}

#[test]
fn each_refusal_message_names_the_cause_and_the_fix() {
    let expect: [(u16, &[&str]); 5] = [
        (
            close::ORIGIN_NOT_ALLOWED,
            &[ORIGIN, "--allowed-origins", "TIMD_ALLOWED_ORIGINS"],
        ),
        (
            close::SERVER_FULL,
            &["full", "--max-connections", "try again later"],
        ),
        (
            close::TOO_MANY_CONNECTIONS,
            &["too many connections", "--max-connections-per-addr"],
        ),
        (
            close::CONNECTION_RATE,
            &["too fast", "--connection-rate-per-addr"],
        ),
        (
            close::TRY_AGAIN_LATER,
            &["session store", "Redis", "try again later"],
        ),
    ];
    for (close, words) in expect {
        let (mut s, op, _) = logging_in();
        s.handle_close(3, close);
        let e = failure(&drain_events(&mut s), op);
        for w in words {
            assert!(e.message.contains(w), "close {close}: {w:?} not in {e:?}");
        }
    }
    // Without a known origin the message still says what to do.
    let mut s = Session::new(Config::new(APP, Platform::Web, "tab-1".into()));
    let op = s.login(0, "alice", "sig");
    s.handle_open(1);
    s.handle_close(2, close::ORIGIN_NOT_ALLOWED);
    let e = failure(&drain_events(&mut s), op);
    assert!(e.message.contains("--allowed-origins"), "{e:?}");
}

#[test]
fn a_login_answered_70050_then_closed_4010_rejects_as_logging_in_too_fast() {
    let (mut s, op, seq) = logging_in();
    s.handle_frame(
        3,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            code: ERR_USERSIG_RATE_LIMITED,
            message: "too many login attempts from this address".into(),
        }),
    );
    // Not settled yet: a ping asks whether the server closes (its address rate) or not.
    assert_eq!(drain_io(&mut s), vec![Io::Send(ClientFrame::Ping)]);
    assert_eq!(drain_events(&mut s), vec![]);
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGING_IN);
    s.handle_close(4, close::LOGIN_RATE);
    let events = drain_events(&mut s);
    let e = failure(&events, op);
    assert_eq!(e.code, SDK_LOGIN_TOO_FAST, "{e:?}");
    assert!(e.message.contains("--login-rate-per-addr"), "{e:?}");
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(drain_io(&mut s), vec![]);
}

#[test]
fn a_login_answered_70050_and_still_open_is_the_usersig_failure_limit() {
    // The server answers the ping: its UserSig failure limit (70050 stays).
    let (mut s, op, seq) = logging_in();
    let limited = ErrorFrame {
        seq: Some(seq),
        code: ERR_USERSIG_RATE_LIMITED,
        message: "too many failed UserSig checks".into(),
    };
    s.handle_frame(3, ServerFrame::Error(limited.clone()));
    assert_eq!(drain_io(&mut s), vec![Io::Send(ClientFrame::Ping)]);
    s.handle_frame(4, ServerFrame::Pong);
    let e = failure(&drain_events(&mut s), op);
    assert_eq!(
        (e.code, e.message.as_str()),
        (70050, limited.message.as_str())
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert_eq!(s.poll_timeout(), None);

    // No answer to the ping at all: 70050 once the probe gives up, not a timeout.
    let (mut s, op, seq) = logging_in();
    s.handle_frame(
        3,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            ..limited.clone()
        }),
    );
    drain_io(&mut s);
    let deadline = s.poll_timeout().expect("the probe has a deadline");
    assert!(deadline <= 3 + WAKE_PROBE_MS, "{deadline}");
    s.handle_timeout(deadline);
    assert_eq!(failure(&drain_events(&mut s), op).code, 70050);
    assert_eq!(drain_io(&mut s), vec![Io::Close]);

    // The socket drops some other way: 70050 as well.
    let (mut s, op, seq) = logging_in();
    s.handle_frame(
        3,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            ..limited
        }),
    );
    drain_io(&mut s);
    s.handle_close(4, 1006);
    assert_eq!(failure(&drain_events(&mut s), op).code, 70050);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn refused_reconnects_report_one_error_per_outage_and_back_off_longer() {
    let mut s = online();
    s.handle_close(1_000, 1006);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)]
    );
    let at = next_attempt(&mut s);
    s.handle_close(at, close::SERVER_FULL);
    let events = drain_events(&mut s);
    assert_eq!(errors(&events), vec![SDK_SERVER_FULL]);
    assert!(!events.contains(&Event::NotReady), "{events:?}");
    assert!(s.is_ready(), "still logged in while it backs off");
    // Attempt 2 at least, equal jitter: 2 to 4 s.
    let wait = s.poll_timeout().unwrap() - at;
    assert!((2_000..=4_000).contains(&wait), "{wait}");

    // Refused again the same way: no second ERROR; the wait doubles.
    let at = next_attempt(&mut s);
    s.handle_close(at, close::SERVER_FULL);
    assert_eq!(errors(&drain_events(&mut s)), Vec::<u32>::new());
    let wait = s.poll_timeout().unwrap() - at;
    assert!((4_000..=8_000).contains(&wait), "{wait}");

    // Another refusal: its own ERROR.
    let at = next_attempt(&mut s);
    s.handle_close(at, close::CONNECTION_RATE);
    assert_eq!(errors(&drain_events(&mut s)), vec![SDK_CONNECTING_TOO_FAST]);

    // Back: resumed, connected, never SDK_NOT_READY.
    resume_now(&mut s);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connected)]
    );
}

/// Reconnects until the resume goes out and answers it; the session is connected again.
fn resume_now(s: &mut Session) -> Millis {
    let (at, seq) = attempt(s);
    s.handle_frame(
        at,
        ServerFrame::ResumeOk {
            seq,
            heartbeat_ms: 25_000,
            expire_at: 2_000_000_000,
            expires_in: 3_000,
        },
    );
    assert!(s.is_connected());
    at
}

#[test]
fn once_back_the_next_outage_reports_its_refusal_again() {
    let mut s = online();
    for round in 0..2 {
        s.handle_close(10_000 * (round + 1), 1006);
        drain_events(&mut s);
        let at = next_attempt(&mut s);
        s.handle_close(at, close::TRY_AGAIN_LATER);
        let events = drain_events(&mut s);
        assert_eq!(
            errors(&events),
            vec![SDK_SERVER_UNAVAILABLE],
            "round {round}"
        );
        let Event::Error(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(e.message.contains("session store"), "{e:?}");
        resume_now(&mut s);
        assert_eq!(
            drain_events(&mut s),
            vec![Event::NetState(NetState::Connected)],
            "round {round}: only NET_STATE_CHANGE"
        );
        assert!(s.is_ready());
    }
}

#[test]
fn a_resume_put_off_with_70169_is_error_2813_and_a_retry_not_a_login() {
    // timd says 70169 in a frame before its close 1013 (which WebKitGTK never shows a page).
    let (mut s, at, seq) = reconnecting();
    s.handle_frame(
        at,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            code: ERR_SERVER_TIMEOUT,
            message: "session store unreachable: retry later".into(),
        }),
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close], "no fallback login");
    let events = drain_events(&mut s);
    assert_eq!(errors(&events), vec![SDK_SERVER_UNAVAILABLE]);
    assert!(s.is_ready());
    let wait = s.poll_timeout().unwrap() - at;
    assert!((2_000..=4_000).contains(&wait), "{wait}");
    // The close that follows changes nothing (the socket is already dropped).
    s.handle_close(at + 1, close::TRY_AGAIN_LATER);
    assert_eq!(drain_events(&mut s), vec![]);
    resume_now(&mut s);
}

#[test]
fn a_resume_closed_4010_is_an_error_event_and_a_retry() {
    let (mut s, at, _) = reconnecting();
    s.handle_close(at, close::LOGIN_RATE);
    let events = drain_events(&mut s);
    assert_eq!(errors(&events), vec![SDK_LOGIN_TOO_FAST]);
    assert!(s.is_ready());
    resume_now(&mut s);
}

#[test]
fn a_refused_origin_after_sdk_ready_ends_the_session_without_retrying() {
    let (mut s, at, _) = reconnecting();
    s.handle_close(at, close::ORIGIN_NOT_ALLOWED);
    let events = drain_events(&mut s);
    let [Event::Error(e), Event::NetState(NetState::Disconnected), Event::NotReady] =
        events.as_slice()
    else {
        panic!("expected ERROR, disconnected, SDK_NOT_READY: {events:?}")
    };
    assert_eq!(e.code, SDK_ORIGIN_NOT_ALLOWED);
    assert!(e.message.contains(ORIGIN), "{e:?}");
    assert!(!s.is_ready());
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_OUT);
    // No loop: nothing scheduled, and a wake-up or the network coming back does not retry.
    assert_eq!(s.poll_timeout(), None);
    s.handle_wake(at + 60_000);
    s.handle_online(at + 60_000);
    assert_eq!(drain_io(&mut s), vec![]);
    // The page may log in again (once the server allows its origin).
    let op = s.login(at + 70_000, "alice", "sig");
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
    s.handle_open(at + 70_001);
    let seq = sent_login(&mut s);
    s.handle_frame(at + 70_002, login_ok(seq, "T2"));
    let events = drain_events(&mut s);
    assert!(events.contains(&Event::Done {
        op,
        result: Ok(OpOk::Login { repeat: false })
    }));
    assert!(s.is_ready());
}

/// Online, the connection dropped, the ticket refused: the fallback login is out.
fn relogging() -> (Session, Millis, u32) {
    let (mut s, at, resume_seq) = reconnecting();
    s.handle_frame(
        at,
        ServerFrame::Error(ErrorFrame {
            seq: Some(resume_seq),
            code: 70402,
            message: "ticket".into(),
        }),
    );
    let seq = match drain_io(&mut s).as_slice() {
        [Io::Send(ClientFrame::Login(l))] => l.seq,
        other => panic!("expected the fallback login, got {other:?}"),
    };
    drain_events(&mut s);
    (s, at, seq)
}

#[test]
fn a_fallback_login_put_off_backs_off_instead_of_ending_the_session() {
    for (code, reported) in [
        (ERR_USERSIG_RATE_LIMITED, SDK_LOGIN_TOO_FAST),
        (ERR_SERVER_TIMEOUT, SDK_SERVER_UNAVAILABLE),
    ] {
        let (mut s, at, seq) = relogging();
        s.handle_frame(
            at,
            ServerFrame::Error(ErrorFrame {
                seq: Some(seq),
                code,
                message: "put off".into(),
            }),
        );
        let events = drain_events(&mut s);
        assert_eq!(errors(&events), vec![reported], "{code}: {events:?}");
        assert!(!events.contains(&Event::NotReady), "{code}: {events:?}");
        assert!(s.is_ready(), "{code}");
        assert_eq!(drain_io(&mut s), vec![Io::Close]);
        let wait = s.poll_timeout().unwrap() - at;
        assert!(
            wait >= 2_000,
            "{code}: a put-off login backs off ({wait} ms)"
        );
        resume_now(&mut s);
    }
}

#[test]
fn unreachable_and_unopenable_servers_say_where_and_why() {
    let mut s = session();
    let op = s.login(0, "alice", "sig");
    s.handle_close(3, 1006);
    let e = failure(&drain_events(&mut s), op);
    assert_eq!(e.code, SDK_NETWORK_ERROR);
    assert!(
        e.message.contains(SERVER) && e.message.contains("serverURL"),
        "{e:?}"
    );

    let mut s = session();
    let op = s.login(0, "alice", "sig");
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
    s.handle_connect_failed(1, "this environment has no WebSocket");
    let events = drain_events(&mut s);
    let e = failure(&events, op);
    assert_eq!(
        (e.code, e.message.as_str()),
        (SDK_NETWORK_ERROR, "this environment has no WebSocket")
    );
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_OUT);

    // While reconnecting it is one more failed attempt.
    let mut s = online();
    s.handle_close(1_000, 1006);
    drain_events(&mut s);
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at);
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
    s.handle_connect_failed(at, "no WebSocket");
    assert!(s.is_ready());
    assert!(s.poll_timeout().unwrap() > at);
}
