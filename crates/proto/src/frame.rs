//! Frames on the `/ws` WebSocket, one JSON text message each.
//!
//! Requests carry a `seq` chosen by the client; the server's answer to a request echoes it.
//! Unsolicited server frames (`kicked`, `error` without `seq`, `ping`) have none.
//!
//! Liveness: the server sends `"ping"` every heartbeat interval to a logged-in socket and the
//! client answers each with `"pong"` from its message handler, so no client timer is needed
//! to stay online (browsers throttle the timers of hidden pages to one wake-up a minute, but
//! deliver socket messages at once). The server drops a socket it heard nothing from for two
//! intervals. A client may still send `"ping"` (older SDKs on their timer, a probe after a
//! wake-up); the server answers `"pong"`.

use alloc::string::String;
use serde::{Deserialize, Serialize};

use crate::names::{KickReason, Platform};

/// Largest frame either side accepts, in bytes. A login is well under 1 KiB.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientFrame {
    Login(Login),
    /// A reconnect: resume the session the ticket names, without logging in again.
    /// Answered by `resume_ok`, by `kicked` if the session was kicked while away, or by an
    /// `error` when the ticket is unusable (the client then logs in with its UserSig).
    Resume {
        seq: u32,
        ticket: String,
    },
    /// A fresh UserSig for the logged-in user, ahead of the current one's expiry;
    /// answered by `renew_ok` (with a new ticket) or an `error`.
    Renew {
        seq: u32,
        usersig: String,
    },
    /// End this instance's session (`tim.logout()`); answered by `logout_ok`.
    Logout {
        seq: u32,
    },
    /// A liveness probe (older clients' heartbeat; the SDK's check after a wake-up);
    /// answered by `pong`.
    Ping,
    /// The answer to the server's `ping`.
    Pong,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub seq: u32,
    pub sdkappid: u32,
    pub user: String,
    pub usersig: String,
    pub platform: Platform,
    /// The instance id: stable across reconnects of one SDK object (one tab).
    pub instance: String,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame {
    LoginOk(LoginOk),
    /// The session resumed on this socket; `expire_at` / `expires_in` as in `login_ok`.
    ResumeOk {
        seq: u32,
        heartbeat_ms: u32,
        expire_at: u64,
        expires_in: u64,
    },
    /// The session now runs on the renewed UserSig, under a new ticket.
    RenewOk {
        seq: u32,
        ticket: String,
        expire_at: u64,
        expires_in: u64,
    },
    LogoutOk {
        seq: u32,
    },
    /// A request failed (`seq` set), or the peer sent something unusable (`seq` absent).
    Error(ErrorFrame),
    /// This instance's session ended; the socket closes right after.
    Kicked {
        reason: KickReason,
    },
    /// The answer to the client's `ping`.
    Pong,
    /// The server's heartbeat, every `heartbeat_ms` while logged in: answer `pong` at once.
    /// Clients that do not know it ignore it (unknown frames are skipped).
    Ping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginOk {
    pub seq: u32,
    /// Opaque session ticket: a reconnect presents it instead of logging in again.
    pub ticket: String,
    /// How often the server pings; it drops a socket it heard nothing from for twice that,
    /// and a client may count a server silent for twice that (plus a margin) as gone.
    pub heartbeat_ms: u32,
    /// Unix seconds at which the UserSig expires (the session then ends with `userSigExpired`).
    pub expire_at: u64,
    /// The same, as seconds from now on the server's clock: clients schedule renewals with
    /// it, so their own wall clock may be wrong.
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    pub code: u32,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn wire_shapes_are_stable() {
        let login = ClientFrame::Login(Login {
            seq: 1,
            sdkappid: 1400000000,
            user: "alice".into(),
            usersig: "sig".into(),
            platform: Platform::Web,
            instance: "i1".into(),
        });
        assert_eq!(
            serde_json::to_string(&login).unwrap(),
            r#"{"login":{"seq":1,"sdkappid":1400000000,"user":"alice","usersig":"sig","platform":"Web","instance":"i1"}}"#
        );
        assert_eq!(
            serde_json::to_string(&ClientFrame::Ping).unwrap(),
            r#""ping""#
        );
        let kicked = ServerFrame::Kicked {
            reason: KickReason::RestApi,
        };
        assert_eq!(
            serde_json::to_string(&kicked).unwrap(),
            r#"{"kicked":{"reason":"REST_API_Kick"}}"#
        );
        let err = ServerFrame::Error(ErrorFrame {
            seq: None,
            code: 70402,
            message: "x".to_string(),
        });
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"error":{"code":70402,"message":"x"}}"#
        );
        assert_eq!(
            serde_json::to_string(&ClientFrame::Resume {
                seq: 3,
                ticket: "t".into()
            })
            .unwrap(),
            r#"{"resume":{"seq":3,"ticket":"t"}}"#
        );
        assert_eq!(
            serde_json::to_string(&ClientFrame::Renew {
                seq: 4,
                usersig: "s".into()
            })
            .unwrap(),
            r#"{"renew":{"seq":4,"usersig":"s"}}"#
        );
        assert_eq!(
            serde_json::to_string(&ClientFrame::Pong).unwrap(),
            r#""pong""#
        );
        assert_eq!(
            serde_json::to_string(&ServerFrame::Ping).unwrap(),
            r#""ping""#
        );
        assert_eq!(
            serde_json::from_str::<ServerFrame>(r#""ping""#).unwrap(),
            ServerFrame::Ping
        );
        assert_eq!(
            serde_json::from_str::<ServerFrame>(r#""pong""#).unwrap(),
            ServerFrame::Pong
        );
        for f in [
            login,
            ClientFrame::Logout { seq: 2 },
            ClientFrame::Ping,
            ClientFrame::Pong,
        ] {
            let s = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<ClientFrame>(&s).unwrap(), f);
        }
    }

    #[test]
    fn unknown_or_malformed_frames_are_errors_not_panics() {
        for bad in [
            "{}",
            "\"pang\"",
            r#"{"login":{}}"#,
            r#"{"login":{"seq":-1}}"#,
            "[]",
            "null",
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }
}
