//! Server frames as the session core reads them: JSON text decoded into `ServerFrame` as the
//! native client decodes it (`serde_json`), fed to a `tim_session::Session` driven through
//! logins, reconnects, renewals, timeouts and closes in virtual time. Frames come raw
//! (any text) or well-formed with the sequence numbers the session just sent, so the
//! fuzzer reaches every state the core has.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tim_proto::{ClientFrame, ErrorFrame, KickReason, LoginOk, Platform, ServerFrame};
use tim_session::{Config, Event, Io, Session};

#[derive(Debug, Arbitrary)]
enum Step {
    /// Any text, decoded as a client decodes it.
    Raw(String),
    /// A well-formed frame answering the last request the session sent.
    Answer(Answer),
    Open,
    Close(u16),
    Timeout,
    Login(String, String),
    Logout,
    Destroy,
    Renew(String),
    RenewFailed,
    Offline,
    Online,
    Wake,
}

#[derive(Debug, Arbitrary)]
enum Answer {
    LoginOk {
        ticket: String,
        heartbeat_ms: u32,
        expire_at: u64,
        expires_in: u64,
    },
    ResumeOk {
        heartbeat_ms: u32,
        expire_at: u64,
        expires_in: u64,
    },
    RenewOk {
        ticket: String,
        expire_at: u64,
        expires_in: u64,
    },
    LogoutOk,
    Error {
        with_seq: bool,
        code: u32,
        message: String,
    },
    Kicked(u8),
    Pong,
    /// The server's heartbeat: the core answers `pong` at once.
    Ping,
}

const REASONS: [KickReason; 4] = [
    KickReason::MultipleAccount,
    KickReason::MultipleDevice,
    KickReason::UserSigExpired,
    KickReason::RestApi,
];

fn frame(answer: Answer, seq: u32) -> ServerFrame {
    match answer {
        Answer::LoginOk {
            ticket,
            heartbeat_ms,
            expire_at,
            expires_in,
        } => ServerFrame::LoginOk(LoginOk {
            seq,
            ticket,
            heartbeat_ms,
            expire_at,
            expires_in,
        }),
        Answer::ResumeOk {
            heartbeat_ms,
            expire_at,
            expires_in,
        } => ServerFrame::ResumeOk {
            seq,
            heartbeat_ms,
            expire_at,
            expires_in,
        },
        Answer::RenewOk {
            ticket,
            expire_at,
            expires_in,
        } => ServerFrame::RenewOk {
            seq,
            ticket,
            expire_at,
            expires_in,
        },
        Answer::LogoutOk => ServerFrame::LogoutOk { seq },
        Answer::Error {
            with_seq,
            code,
            message,
        } => ServerFrame::Error(ErrorFrame {
            seq: with_seq.then_some(seq),
            code,
            message,
        }),
        Answer::Kicked(r) => ServerFrame::Kicked {
            reason: REASONS[usize::from(r) % REASONS.len()],
        },
        Answer::Pong => ServerFrame::Pong,
        Answer::Ping => ServerFrame::Ping,
    }
}

fn seq_of(frame: &ClientFrame) -> Option<u32> {
    match frame {
        ClientFrame::Login(l) => Some(l.seq),
        ClientFrame::Resume { seq, .. }
        | ClientFrame::Renew { seq, .. }
        | ClientFrame::Logout { seq } => Some(*seq),
        ClientFrame::Ping | ClientFrame::Pong => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(renew) = bool::arbitrary(&mut u) else {
        return;
    };
    let mut config = Config::new(1_400_000_000, Platform::Web, "tab".into());
    config.renew = renew;
    let mut session = Session::new(config);
    let mut now: u64 = 1_000;
    let mut last_seq = 1;
    for _ in 0..64 {
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        let Ok(advance) = u.int_in_range(0..=120_000u64) else {
            break;
        };
        now += advance;
        match step {
            Step::Raw(text) => {
                if let Ok(f) = serde_json::from_str::<ServerFrame>(&text) {
                    session.handle_frame(now, f);
                }
            }
            Step::Answer(a) => {
                let f = frame(a, last_seq);
                // What the server would send, as the client would decode it.
                let text = serde_json::to_string(&f).unwrap();
                let decoded: ServerFrame = serde_json::from_str(&text).unwrap();
                assert_eq!(decoded, f);
                session.handle_frame(now, decoded);
            }
            Step::Open => session.handle_open(now),
            Step::Close(code) => session.handle_close(now, code),
            Step::Timeout => session.handle_timeout(now),
            Step::Login(user, sig) => {
                session.login(now, &user, &sig);
            }
            Step::Logout => {
                session.logout(now);
            }
            Step::Destroy => {
                session.destroy(now);
            }
            Step::Renew(sig) => session.renew(now, &sig),
            Step::RenewFailed => session.renew_failed(now),
            Step::Offline => session.handle_offline(now),
            Step::Online => session.handle_online(now),
            Step::Wake => session.handle_wake(now),
        }
        while let Some(io) = session.poll_io() {
            if let Io::Send(f) = &io {
                if let Some(seq) = seq_of(f) {
                    last_seq = seq;
                }
            }
        }
        while let Some(event) = session.poll_event() {
            if let Event::Ready = event {
                assert!(!session.login_user().is_empty() || session.is_destroyed());
            }
        }
        if let Some(at) = session.poll_timeout() {
            // A deadline in the past is handled at once by a driver; it must not stay there.
            if at <= now {
                session.handle_timeout(now);
            }
        }
    }
});
