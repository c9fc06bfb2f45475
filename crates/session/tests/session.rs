//! The session core in virtual time: every test drives `Session` by hand, playing the server.

mod common;

use common::{drain_events, drain_io, failure, login_ok};
use tim_proto::*;
use tim_session::*;

const APP: u32 = 1_400_000_000;

fn session() -> Session {
    Session::new(Config::new(APP, Platform::Web, "inst-1".into()))
}

fn login_seq(io: &[Io]) -> u32 {
    io.iter()
        .find_map(|io| match io {
            Io::Send(ClientFrame::Login(l)) => Some(l.seq),
            _ => None,
        })
        .expect("a login frame was sent")
}

/// Logs `user` in at `now` and returns the login op; the session is ready afterwards.
fn logged_in(s: &mut Session, now: Millis, user: &str) -> OpId {
    let op = s.login(now, user, "sig");
    s.handle_open(now);
    let io = drain_io(s);
    s.handle_frame(now, login_ok(login_seq(&io), "t1"));
    drain_events(s);
    assert!(s.is_ready());
    op
}

fn done(op: OpId, result: Result<OpOk, SdkError>) -> Event {
    Event::Done { op, result }
}

fn err_code(events: &[Event], op: OpId) -> u32 {
    failure(events, op).code
}

#[test]
fn login_connects_sends_and_becomes_ready() {
    let mut s = session();
    let op = s.login(0, "alice", "sig");
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)]
    );
    assert_eq!(s.poll_timeout(), Some(10_000), "the login has a deadline");

    s.handle_open(5);
    let io = drain_io(&mut s);
    assert_eq!(
        io,
        vec![Io::Send(ClientFrame::Login(Login {
            seq: login_seq(&io),
            sdkappid: APP,
            user: "alice".into(),
            usersig: "sig".into(),
            platform: Platform::Web,
            instance: "inst-1".into(),
        }))]
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connected)]
    );
    assert_eq!(s.login_user(), "");

    s.handle_frame(9, login_ok(login_seq(&io), "t1"));
    assert_eq!(
        drain_events(&mut s),
        vec![done(op, Ok(OpOk::Login { repeat: false })), Event::Ready]
    );
    assert!(s.is_ready());
    assert_eq!(s.login_user(), "alice");
    assert_eq!(s.ticket(), Some("t1"));
    assert_eq!(
        s.poll_timeout(),
        Some(9 + dead_after(25_000)),
        "next: the dead-server check (no ping of ours)"
    );
}

#[test]
fn bad_input_is_refused_before_any_network_use() {
    let cases = [
        (0, "alice", "sig", SDK_NO_SDKAPPID),
        (APP, "", "sig", SDK_NO_IDENTIFIER),
        (APP, "a b", "sig", SDK_NO_IDENTIFIER),
        (APP, &"x".repeat(33), "sig", SDK_NO_IDENTIFIER),
        (APP, "alice", "", SDK_NO_USERSIG),
    ];
    for (app, user, sig, code) in cases {
        let mut s = Session::new(Config::new(app, Platform::Web, "i".into()));
        let op = s.login(0, user, sig);
        assert_eq!(drain_io(&mut s), vec![], "{user:?}");
        assert_eq!(err_code(&drain_events(&mut s), op), code, "{user:?}");
    }
}

#[test]
fn second_login_while_one_is_under_way_is_repeat_login() {
    let mut s = session();
    s.login(0, "alice", "sig");
    let second = s.login(1, "alice", "sig");
    assert_eq!(err_code(&drain_events(&mut s), second), SDK_REPEAT_LOGIN);
    s.handle_open(2);
    drain_io(&mut s);
    let third = s.login(3, "bob", "sig");
    assert_eq!(err_code(&drain_events(&mut s), third), SDK_REPEAT_LOGIN);
    assert_eq!(drain_io(&mut s), vec![], "the refused logins sent nothing");
}

#[test]
fn same_user_again_is_repeat_login_true_without_network() {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    let op = s.login(1, "alice", "other-sig");
    assert_eq!(drain_io(&mut s), vec![]);
    assert_eq!(
        drain_events(&mut s),
        vec![done(op, Ok(OpOk::Login { repeat: true }))]
    );
    assert!(s.is_ready());
}

#[test]
fn another_user_switches_accounts_old_session_ends_first() {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    let op = s.login(1, "bob", "sig");
    let io = drain_io(&mut s);
    assert!(
        matches!(io[0], Io::Send(ClientFrame::Logout { .. })),
        "{io:?}"
    );
    assert!(
        matches!(&io[1], Io::Send(ClientFrame::Login(l)) if l.user == "bob"),
        "{io:?}"
    );
    assert_eq!(drain_events(&mut s), vec![Event::NotReady]);
    assert_eq!(s.login_user(), "");
    if let Io::Send(ClientFrame::Logout { seq }) = io[0] {
        s.handle_frame(2, ServerFrame::LogoutOk { seq });
    }
    assert_eq!(
        drain_io(&mut s),
        vec![],
        "the old logout's answer must not close the socket"
    );
    s.handle_frame(3, login_ok(login_seq(&io), "t1"));
    assert_eq!(
        drain_events(&mut s),
        vec![done(op, Ok(OpOk::Login { repeat: false })), Event::Ready]
    );
    assert_eq!(s.login_user(), "bob");
}

#[test]
fn server_error_rejects_login_with_its_code_and_closes() {
    let mut s = session();
    let op = s.login(0, "alice", "sig");
    s.handle_open(0);
    let seq = login_seq(&drain_io(&mut s));
    drain_events(&mut s);
    s.handle_frame(
        1,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            code: 70001,
            message: "expired".into(),
        }),
    );
    assert_eq!(
        drain_events(&mut s),
        vec![done(op, Err(SdkError::new(70001, "expired")))]
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert_eq!(s.poll_timeout(), None, "nothing left to wake for");
    // A later login works from scratch.
    s.login(2, "alice", "sig2");
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
}

#[test]
fn unanswered_login_times_out_with_network_timeout() {
    let mut s = session();
    let op = s.login(100, "alice", "sig");
    s.handle_open(100);
    drain_io(&mut s);
    drain_events(&mut s);
    s.handle_timeout(100 + 9_999);
    assert_eq!(drain_events(&mut s), vec![]);
    s.handle_timeout(100 + 10_000);
    assert_eq!(err_code(&drain_events(&mut s), op), SDK_NETWORK_TIMEOUT);
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
}

#[test]
fn unreachable_server_rejects_with_network_error() {
    let mut s = session();
    let op = s.login(0, "alice", "sig");
    drain_events(&mut s);
    s.handle_close(3, 1006);
    let events = drain_events(&mut s);
    assert_eq!(events[0], Event::NetState(NetState::Disconnected));
    assert_eq!(err_code(&events, op), SDK_NETWORK_ERROR);
    assert_eq!(s.poll_timeout(), None);
}

/// alice logged in, then `logout()` at 10: the session, the op and the logout frame's seq.
fn logging_out() -> (Session, OpId, u32) {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    let op = s.logout(10);
    let io = drain_io(&mut s);
    let [Io::Send(ClientFrame::Logout { seq })] = io[..] else {
        panic!("{io:?}")
    };
    (s, op, seq)
}

#[test]
fn logout_sends_waits_and_ends_with_not_ready() {
    let (mut s, op, seq) = logging_out();
    assert_eq!(drain_events(&mut s), vec![]);
    s.handle_frame(11, ServerFrame::LogoutOk { seq });
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NotReady, done(op, Ok(OpOk::Logout))]
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert!(!s.is_ready());
    assert_eq!(s.login_user(), "");

    let again = s.logout(12);
    assert_eq!(
        err_code(&drain_events(&mut s), again),
        SDK_USER_NOT_LOGGED_IN
    );
}

#[test]
fn logout_completes_even_without_an_answer() {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    let op = s.logout(10);
    drain_io(&mut s);
    s.handle_timeout(10 + 3_000);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NotReady, done(op, Ok(OpOk::Logout))]
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
}

#[test]
fn logout_during_login_abandons_it() {
    let mut s = session();
    let login = s.login(0, "alice", "sig");
    let logout = s.logout(1);
    let events = drain_events(&mut s);
    assert_eq!(err_code(&events, login), SDK_LOGGED_OUT);
    assert!(events.contains(&done(logout, Ok(OpOk::Logout))));
    assert_eq!(drain_io(&mut s), vec![Io::Connect, Io::Close]);
}

#[test]
fn server_pings_are_answered_at_once_and_the_session_never_pings_on_a_timer() {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    // Hours online: the server pings every 25 s, each answered from the frame handler; the
    // session's own wake-ups (had the driver called them) send nothing.
    let mut now = 0;
    for _ in 0..1_000 {
        now += 25_000;
        s.handle_frame(now, ServerFrame::Ping);
        assert_eq!(
            drain_io(&mut s),
            vec![Io::Send(ClientFrame::Pong)],
            "at {now}"
        );
        let next = s.poll_timeout().expect("the dead-server check is armed");
        assert_eq!(next, now + dead_after(25_000));
        s.handle_timeout(now + 24_999);
        assert_eq!(drain_io(&mut s), vec![], "no timer ping at {now}");
    }
    assert!(s.is_connected());
    assert_eq!(
        drain_events(&mut s),
        vec![],
        "no NET_STATE_CHANGE in all that time"
    );
}

#[test]
fn a_throttled_timer_firing_late_does_not_drop_a_connection_the_server_keeps_pinging() {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    // A hidden tab: the driver's timer fires once a minute at best, late for every deadline
    // it asked for, while socket messages (the server's pings) still arrive on time.
    let mut now = 0;
    for minute in 1..=120 {
        let wake = minute * 60_000;
        while now + 25_000 <= wake {
            now += 25_000;
            s.handle_frame(now, ServerFrame::Ping);
            assert_eq!(drain_io(&mut s), vec![Io::Send(ClientFrame::Pong)]);
        }
        s.handle_timeout(wake);
        assert_eq!(drain_io(&mut s), vec![], "minute {minute}");
    }
    assert!(s.is_connected());
    assert_eq!(drain_events(&mut s), vec![]);
}

#[test]
fn a_silent_server_is_dead_after_two_intervals_and_a_margin() {
    assert_eq!(dead_after(25_000), 55_000, "2 x 25 s + 5 s");
    assert_eq!(dead_after(1_000), 2_500, "2 x 1 s + 0.5 s");
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    s.handle_frame(25_000, ServerFrame::Ping);
    drain_io(&mut s);
    // Then nothing: the server is gone (killed without a FIN, a black hole, frozen).
    assert_eq!(s.poll_timeout(), Some(25_000 + 55_000));
    s.handle_timeout(25_000 + 54_999);
    assert_eq!(drain_io(&mut s), vec![]);
    s.handle_timeout(25_000 + 55_000);
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    // Not the end of the session: it reconnects by itself.
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)]
    );
    assert!(s.is_ready());
    assert!(s.poll_timeout().is_some(), "a retry is scheduled");
}

#[test]
fn a_throttled_timer_still_notices_a_dead_server_late() {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    s.handle_frame(25_000, ServerFrame::Ping);
    drain_io(&mut s);
    // The check was due at 80 s; a throttled driver only wakes at 120 s: noticed then.
    s.handle_timeout(60_000);
    assert_eq!(drain_io(&mut s), vec![]);
    s.handle_timeout(120_000);
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NetState(NetState::Connecting)]
    );
}

#[test]
fn pings_outside_an_open_socket_are_not_answered() {
    let mut s = session();
    s.handle_frame(0, ServerFrame::Ping);
    assert_eq!(drain_io(&mut s), vec![], "no socket");
    let op = s.login(0, "alice", "sig");
    drain_io(&mut s);
    s.handle_frame(1, ServerFrame::Ping);
    assert_eq!(drain_io(&mut s), vec![], "still opening");
    s.handle_open(2);
    let io = drain_io(&mut s);
    s.handle_frame(3, ServerFrame::Ping);
    assert_eq!(
        drain_io(&mut s),
        vec![Io::Send(ClientFrame::Pong)],
        "open, logging in"
    );
    s.handle_frame(4, login_ok(login_seq(&io), "t1"));
    assert!(drain_events(&mut s).contains(&done(op, Ok(OpOk::Login { repeat: false }))));
}

#[test]
fn kicked_session_stays_out_and_never_reconnects_by_itself() {
    for reason in [
        KickReason::MultipleAccount,
        KickReason::MultipleDevice,
        KickReason::UserSigExpired,
        KickReason::RestApi,
    ] {
        let mut s = session();
        logged_in(&mut s, 0, "alice");
        s.handle_frame(5, ServerFrame::Kicked { reason });
        assert_eq!(
            drain_events(&mut s),
            vec![Event::Kicked(reason), Event::NotReady]
        );
        assert_eq!(drain_io(&mut s), vec![Io::Close]);
        assert_eq!(s.kicked(), Some(reason));
        assert!(!s.is_ready());
        assert_eq!(s.poll_timeout(), None, "no timer may bring it back");
        s.handle_close(6, 4002);
        s.handle_timeout(1_000_000);
        assert_eq!(drain_io(&mut s), vec![]);
        assert_eq!(drain_events(&mut s), vec![]);
        // Only an explicit login brings it back.
        s.login(7, "alice", "sig");
        assert_eq!(drain_io(&mut s), vec![Io::Connect]);
    }
}

#[test]
fn destroy_ends_everything_and_later_calls_fail() {
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    let op = s.destroy(1);
    let io = drain_io(&mut s);
    assert!(
        matches!(io[..], [Io::Send(ClientFrame::Logout { .. }), Io::Close]),
        "{io:?}"
    );
    assert_eq!(
        drain_events(&mut s),
        vec![
            Event::NotReady,
            Event::Destroyed,
            done(op, Ok(OpOk::Destroy))
        ]
    );
    assert_eq!(s.poll_timeout(), None);
    let login = s.login(2, "alice", "sig");
    let logout = s.logout(2);
    let again = s.destroy(2);
    let events = drain_events(&mut s);
    for op in [login, logout, again] {
        assert_eq!(err_code(&events, op), SDK_INVALID_OPERATION);
    }
    assert_eq!(drain_io(&mut s), vec![]);
    // Bad arguments after destroy: still an invalid operation, not an argument error.
    let bad = [
        s.login(3, "", "sig"),
        s.login(3, "alice", ""),
        s.login(3, "no way!", ""),
    ];
    let events = drain_events(&mut s);
    for op in bad {
        assert_eq!(err_code(&events, op), SDK_INVALID_OPERATION);
    }
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_OUT);
}

#[test]
fn login_status_follows_the_session() {
    let mut s = session();
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_OUT);
    s.login(0, "alice", "sig");
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGING_IN);
    s.handle_open(1);
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGING_IN);
    let mut s = session();
    logged_in(&mut s, 0, "alice");
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_IN);
    // A lost connection coming back is still logged in.
    s.handle_close(1, 1006);
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_IN);
    s.handle_frame(
        2,
        ServerFrame::Kicked {
            reason: KickReason::RestApi,
        },
    );
    assert_eq!(s.login_status(), LOGIN_STATUS_LOGGED_OUT);
}

#[test]
fn destroy_during_login_rejects_the_login() {
    let mut s = session();
    let login = s.login(0, "alice", "sig");
    s.destroy(1);
    assert_eq!(
        err_code(&drain_events(&mut s), login),
        SDK_INVALID_OPERATION
    );
    assert_eq!(drain_io(&mut s), vec![Io::Connect, Io::Close]);
}

/// Invariant 9: whatever happens, in any order, every command's op settles exactly once.
#[test]
fn every_op_settles_exactly_once_under_random_schedules() {
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for _ in 0..2_000 {
        let mut s = session();
        let mut now = 0;
        let mut ops = Vec::new();
        let mut settled = std::collections::HashMap::<OpId, u32>::new();
        let mut last_seq = 0;
        for _ in 0..30 {
            now += next(4_000);
            match next(10) {
                0 | 1 => ops.push(s.login(now, ["alice", "bob"][next(2) as usize], "sig")),
                2 => ops.push(s.logout(now)),
                3 => s.handle_open(now),
                4 => s.handle_frame(now, login_ok(last_seq, "t1")),
                5 => s.handle_frame(now, ServerFrame::LogoutOk { seq: last_seq }),
                6 => s.handle_frame(
                    now,
                    ServerFrame::Error(ErrorFrame {
                        seq: Some(last_seq),
                        code: 70001,
                        message: String::new(),
                    }),
                ),
                7 => s.handle_frame(
                    now,
                    ServerFrame::Kicked {
                        reason: KickReason::MultipleAccount,
                    },
                ),
                8 => s.handle_close(now, 1006),
                _ => {
                    if let Some(t) = s.poll_timeout() {
                        now = now.max(t);
                        s.handle_timeout(now);
                    }
                }
            }
            while let Some(io) = s.poll_io() {
                if let Io::Send(
                    ClientFrame::Login(Login { seq, .. }) | ClientFrame::Logout { seq },
                ) = io
                {
                    last_seq = seq;
                }
            }
            while let Some(e) = s.poll_event() {
                if let Event::Done { op, .. } = e {
                    *settled.entry(op).or_default() += 1;
                }
            }
        }
        ops.push(s.destroy(now));
        while let Some(e) = s.poll_event() {
            if let Event::Done { op, .. } = e {
                *settled.entry(op).or_default() += 1;
            }
        }
        for op in &ops {
            assert_eq!(
                settled.get(op),
                Some(&1),
                "op {op} settled {:?} times",
                settled.get(op)
            );
        }
        assert_eq!(settled.len(), ops.len());
        assert_eq!(s.poll_timeout(), None, "a destroyed session keeps no timer");
    }
}

/// The SDK claims its instance id while the socket opens: the login waits for the id, then
/// goes out at once; setting it later changes nothing for an online session.
#[test]
fn login_waits_for_the_instance_id_while_the_socket_opens() {
    let mut s = Session::new(Config::new(APP, Platform::Web, String::new()));
    let op = s.login(0, "alice", "sig");
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
    s.handle_open(1);
    assert_eq!(drain_io(&mut s), vec![], "no login without an instance id");
    s.set_instance(2, "claimed".into());
    let io = drain_io(&mut s);
    assert!(
        matches!(&io[..], [Io::Send(ClientFrame::Login(l))] if l.instance == "claimed"),
        "{io:?}"
    );
    s.handle_frame(3, login_ok(login_seq(&io), "t1"));
    assert!(drain_events(&mut s).contains(&done(op, Ok(OpOk::Login { repeat: false }))));
    s.set_instance(4, "claimed".into());
    assert!(s.is_ready());
    assert_eq!(drain_io(&mut s), vec![]);
}

/// A server that could not record the logout yet (cluster mode, Redis unreachable) answers
/// `error` 70169 instead of `logout_ok` — or closes 1013: either way `logout()` resolves and
/// the session ends here (the ticket is dropped; the server writes the end once it can).
#[test]
fn a_logout_the_server_could_not_record_still_ends_the_session_here() {
    let (mut s, op, seq) = logging_out();
    s.handle_frame(
        11,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            code: 70169,
            message: "logout not recorded: session store unreachable".into(),
        }),
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NotReady, done(op, Ok(OpOk::Logout))]
    );
    assert_eq!(drain_io(&mut s), vec![Io::Close]);
    assert!(!s.is_ready());

    let (mut s, op, _) = logging_out();
    s.handle_close(11, 1013);
    assert_eq!(
        drain_events(&mut s),
        vec![Event::NotReady, done(op, Ok(OpOk::Logout))]
    );
    assert!(!s.is_ready());
    assert_eq!(s.poll_timeout(), None, "no reconnect: the session is over");
}
