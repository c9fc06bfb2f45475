//! UserSig renewal while online, in virtual time: asked for ahead of expiry, sent, retried
//! after failures, deferred while the connection is down.

use tim_proto::*;
use tim_session::*;

fn drain_io(s: &mut Session) -> Vec<Io> {
    std::iter::from_fn(|| s.poll_io()).collect()
}

fn drain_events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Online at t=0 with a UserSig expiring in `expires_in` seconds.
fn online(renew: bool, expires_in: u64) -> Session {
    let mut config = Config::new(1_400_000_000, Platform::Web, "tab".into());
    config.renew = renew;
    let mut s = Session::new(config);
    s.login(0, "alice", "sig-1");
    s.handle_open(0);
    let Io::Send(ClientFrame::Login(l)) = drain_io(&mut s).remove(1) else {
        panic!()
    };
    s.handle_frame(
        0,
        ServerFrame::LoginOk(LoginOk {
            seq: l.seq,
            ticket: "T1".into(),
            heartbeat_ms: 2_000_000_000,
            expire_at: 1_000 + expires_in,
            expires_in,
        }),
    );
    drain_events(&mut s);
    s
}

fn renew_seq(io: &[Io], usersig: &str) -> u32 {
    match io {
        [Io::Send(ClientFrame::Renew { seq, usersig: u })] if u == usersig => *seq,
        other => panic!("expected a renew with {usersig}, got {other:?}"),
    }
}

#[test]
fn renewal_timing() {
    assert_eq!(renew_delay(3_600), 3_300_000, "5 minutes ahead");
    assert_eq!(renew_delay(10), 5_000, "half the lifetime when short");
    assert_eq!(renew_delay(0), 0);
}

#[test]
fn without_get_usersig_nothing_is_asked() {
    let s = online(false, 10);
    assert_eq!(
        s.poll_timeout(),
        Some(dead_after(2_000_000_000)),
        "only the dead-server check"
    );
}

#[test]
fn asks_ahead_of_expiry_sends_and_reschedules() {
    let mut s = online(true, 3_600);
    assert_eq!(s.poll_timeout(), Some(3_300_000));
    s.handle_timeout(3_300_000);
    assert_eq!(drain_events(&mut s), vec![Event::RenewUserSig]);
    s.renew(3_300_100, "sig-2");
    let seq = renew_seq(&drain_io(&mut s), "sig-2");
    s.handle_frame(
        3_300_200,
        ServerFrame::RenewOk {
            seq,
            ticket: "T2".into(),
            expire_at: 9_999,
            expires_in: 7_200,
        },
    );
    assert_eq!(s.ticket(), Some("T2"));
    assert_eq!(s.expire_at(), Some(9_999));
    assert_eq!(s.poll_timeout(), Some(3_300_200 + 6_900_000));
    assert_eq!(drain_events(&mut s), vec![], "the page sees nothing");
    assert!(s.is_connected());
}

#[test]
fn failures_are_retried() {
    let mut s = online(true, 10);
    s.handle_timeout(5_000);
    assert_eq!(drain_events(&mut s), vec![Event::RenewUserSig]);
    // getUserSig rejected or returned garbage.
    s.renew_failed(5_010);
    assert_eq!(s.poll_timeout(), Some(5_010 + RENEW_RETRY_MS));
    s.handle_timeout(5_010 + RENEW_RETRY_MS);
    assert_eq!(drain_events(&mut s), vec![Event::RenewUserSig]);
    s.renew(10_100, ""); // an empty string is garbage too
    assert_eq!(drain_io(&mut s), vec![]);
    assert_eq!(s.poll_timeout(), Some(10_100 + RENEW_RETRY_MS));
    s.handle_timeout(10_100 + RENEW_RETRY_MS);
    drain_events(&mut s);
    // The server refuses it (e.g. a UserSig for someone else).
    s.renew(15_200, "sig-x");
    let seq = renew_seq(&drain_io(&mut s), "sig-x");
    s.handle_frame(
        15_300,
        ServerFrame::Error(ErrorFrame {
            seq: Some(seq),
            code: 70013,
            message: String::new(),
        }),
    );
    assert!(
        s.is_ready(),
        "a refused renewal does not end the session by itself"
    );
    assert_eq!(s.poll_timeout(), Some(15_300 + RENEW_RETRY_MS));
    // At expiry the server ends it.
    s.handle_frame(
        16_000,
        ServerFrame::Kicked {
            reason: KickReason::UserSigExpired,
        },
    );
    assert_eq!(
        drain_events(&mut s),
        vec![Event::Kicked(KickReason::UserSigExpired), Event::NotReady]
    );
    assert_eq!(s.poll_timeout(), None, "no renewal after the end");
}

#[test]
fn a_renewal_during_a_reconnect_is_sent_once_back() {
    let mut s = online(true, 10);
    s.handle_timeout(5_000);
    drain_events(&mut s);
    s.handle_close(5_001, 1006);
    drain_events(&mut s);
    s.renew(5_002, "sig-2");
    assert_eq!(drain_io(&mut s), vec![], "no connection: kept for later");
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at);
    assert_eq!(drain_io(&mut s), vec![Io::Connect]);
    s.handle_open(at);
    let Io::Send(ClientFrame::Resume { seq, .. }) = drain_io(&mut s).remove(0) else {
        panic!()
    };
    s.handle_frame(
        at,
        ServerFrame::ResumeOk {
            seq,
            heartbeat_ms: 2_000_000_000,
            expire_at: 1_010,
            expires_in: 3,
        },
    );
    renew_seq(&drain_io(&mut s), "sig-2");
}

#[test]
fn a_renewal_lost_with_the_connection_is_sent_again_once_back() {
    let mut s = online(true, 10);
    s.handle_timeout(5_000);
    drain_events(&mut s);
    s.renew(5_001, "sig-2");
    renew_seq(&drain_io(&mut s), "sig-2");
    s.handle_close(5_002, 1006); // before renew_ok
    drain_events(&mut s);
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at);
    s.handle_open(at);
    let Io::Send(ClientFrame::Resume { seq, .. }) = drain_io(&mut s).remove(1) else {
        panic!()
    };
    s.handle_frame(
        at,
        ServerFrame::ResumeOk {
            seq,
            heartbeat_ms: 2_000_000_000,
            expire_at: 1_004,
            expires_in: 3,
        },
    );
    renew_seq(&drain_io(&mut s), "sig-2");
}

#[test]
fn a_never_expiring_usersig_schedules_no_runaway_renewal() {
    let mut s = online(true, u64::MAX / 1_000);
    assert!(
        s.poll_timeout().unwrap() > 1_000_000_000,
        "{:?}",
        s.poll_timeout()
    );
    s.handle_timeout(1);
    assert_eq!(drain_events(&mut s), vec![]);
}
