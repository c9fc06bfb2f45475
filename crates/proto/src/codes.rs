//! Error codes, with the values of `tim-js-sdk` (SDK side, 2xxx/3xxx) and of Tencent's
//! server (7xxxx, 6xxxx). See `shared/REFERENCE.md`.

// SDK side.
pub const SDK_NO_SDKAPPID: u32 = 2000;
pub const SDK_NO_IDENTIFIER: u32 = 2002;
pub const SDK_NO_USERSIG: u32 = 2003;
pub const SDK_USER_NOT_LOGGED_IN: u32 = 2024;
pub const SDK_REPEAT_LOGIN: u32 = 2025;
pub const SDK_NETWORK_ERROR: u32 = 2800;
pub const SDK_NETWORK_TIMEOUT: u32 = 2801;
pub const SDK_NO_NETWORK: u32 = 2805;
// The server was reached and refused the connection (tim-wasm's own, beside 2800/2801: 28xx
// with the last two digits of the close code that says why; see [`refusal_code`]).
/// Close 4006: the page's origin is not in `timd --allowed-origins`. Not retried.
pub const SDK_ORIGIN_NOT_ALLOWED: u32 = 2806;
/// Close 4007: the server holds `--max-connections`.
pub const SDK_SERVER_FULL: u32 = 2807;
/// Close 4008: this address holds `--max-connections-per-addr`.
pub const SDK_TOO_MANY_CONNECTIONS: u32 = 2808;
/// Close 4009: this address opens connections faster than `--connection-rate-per-addr`.
pub const SDK_CONNECTING_TOO_FAST: u32 = 2809;
/// Close 4010: this address sends logins faster than `--login-rate-per-addr`.
pub const SDK_LOGIN_TOO_FAST: u32 = 2810;
/// Close 1013: the server cannot decide now (cluster mode: its Redis is unreachable).
pub const SDK_SERVER_UNAVAILABLE: u32 = 2813;
pub const SDK_UNCAUGHT_ERROR: u32 = 2903;
pub const SDK_INVALID_OPERATION: u32 = 2905;
pub const SDK_IS_NOT_READY: u32 = 2999;
pub const SDK_LOGGING_IN: u32 = 3000;
pub const SDK_LOGIN_FAILED: u32 = 3001;
pub const SDK_KICKED_OUT_MULT_DEVICE: u32 = 3002;
pub const SDK_KICKED_OUT_MULT_ACCOUNT: u32 = 3003;
pub const SDK_KICKED_OUT_USERSIG_EXPIRED: u32 = 3004;
pub const SDK_LOGGED_OUT: u32 = 3005;
pub const SDK_KICKED_OUT_REST_API: u32 = 3006;
pub const SDK_ERR_USER_SIG_EXPIRED: u32 = 6206;

/// The SDK error code of a connection the server refused with close code `close`: the abuse
/// limits right after the handshake (4006-4010) and 1013 (try again later). `None` for every
/// other close (a lost connection, a restart, ...).
pub const fn refusal_code(close: u16) -> Option<u32> {
    match close {
        close::ORIGIN_NOT_ALLOWED => Some(SDK_ORIGIN_NOT_ALLOWED),
        close::SERVER_FULL => Some(SDK_SERVER_FULL),
        close::TOO_MANY_CONNECTIONS => Some(SDK_TOO_MANY_CONNECTIONS),
        close::CONNECTION_RATE => Some(SDK_CONNECTING_TOO_FAST),
        close::LOGIN_RATE => Some(SDK_LOGIN_TOO_FAST),
        close::TRY_AGAIN_LATER => Some(SDK_SERVER_UNAVAILABLE),
        _ => None,
    }
}

/// `TIM.ERROR_CODE.*`: the SDK-side codes the SDK produces, `(key, value)`, with
/// `tim-js-sdk`'s names where it has the code (it exposes no such table itself).
pub const ERROR_CODES: &[(&str, u32)] = &[
    ("NO_SDKAPPID", SDK_NO_SDKAPPID),
    ("NO_IDENTIFIER", SDK_NO_IDENTIFIER),
    ("NO_USERSIG", SDK_NO_USERSIG),
    ("USER_NOT_LOGGED_IN", SDK_USER_NOT_LOGGED_IN),
    ("REPEAT_LOGIN", SDK_REPEAT_LOGIN),
    ("NETWORK_ERROR", SDK_NETWORK_ERROR),
    ("NETWORK_TIMEOUT", SDK_NETWORK_TIMEOUT),
    ("NO_NETWORK", SDK_NO_NETWORK),
    ("ORIGIN_NOT_ALLOWED", SDK_ORIGIN_NOT_ALLOWED),
    ("SERVER_FULL", SDK_SERVER_FULL),
    ("TOO_MANY_CONNECTIONS", SDK_TOO_MANY_CONNECTIONS),
    ("CONNECTING_TOO_FAST", SDK_CONNECTING_TOO_FAST),
    ("LOGIN_TOO_FAST", SDK_LOGIN_TOO_FAST),
    ("SERVER_UNAVAILABLE", SDK_SERVER_UNAVAILABLE),
    ("UNCAUGHT_ERROR", SDK_UNCAUGHT_ERROR),
    ("INVALID_OPERATION", SDK_INVALID_OPERATION),
    ("KICKED_OUT_MULT_DEVICE", SDK_KICKED_OUT_MULT_DEVICE),
    ("KICKED_OUT_MULT_ACCOUNT", SDK_KICKED_OUT_MULT_ACCOUNT),
    ("KICKED_OUT_USERSIG_EXPIRED", SDK_KICKED_OUT_USERSIG_EXPIRED),
    ("LOGGED_OUT", SDK_LOGGED_OUT),
    ("KICKED_OUT_REST_API", SDK_KICKED_OUT_REST_API),
];

// Server side (login and REST).
pub const ERR_USERSIG_EXPIRED: u32 = 70001;
pub const ERR_USERSIG_EMPTY: u32 = 70002;
pub const ERR_USERSIG_INVALID: u32 = 70003;
pub const ERR_USERSIG_SIGNATURE: u32 = 70009;
pub const ERR_USERSIG_IDENTIFIER_MISMATCH: u32 = 70013;
pub const ERR_USERSIG_SDKAPPID_MISMATCH: u32 = 70014;
pub const ERR_SDKAPPID_NOT_FOUND: u32 = 70020;
pub const ERR_USERSIG_RATE_LIMITED: u32 = 70050;
pub const ERR_ACCOUNT_NOT_FOUND: u32 = 70107;
pub const ERR_SERVER_TIMEOUT: u32 = 70169;
pub const ERR_INVALID_PARAMETERS: u32 = 70402;
pub const ERR_NEED_ADMIN: u32 = 70403;
pub const ERR_INTERNAL: u32 = 70500;
pub const ERR_REST_FREQ_API: u32 = 60007;
pub const ERR_REST_FREQ_APP: u32 = 60011;
pub const ERR_REST_BAD_URL: u32 = 60002;
pub const ERR_REST_BAD_JSON: u32 = 60003;
pub const ERR_REST_UNKNOWN_SDKAPPID: u32 = 60006;
pub const ERR_REST_NO_SUCH_API: u32 = 60009;
pub const ERR_REST_NO_SDKAPPID: u32 = 60012;
pub const ERR_REST_WRONG_TYPE: u32 = 60015;

/// WebSocket close codes `timd` uses (4000-4999 is the application range).
pub mod close {
    /// The peer broke the protocol beyond recovery (an oversized message, broken WebSocket
    /// framing). Merely malformed frames get an `error` frame and the socket stays open.
    pub const PROTOCOL: u16 = 4000;
    /// No login within the server's login deadline.
    pub const LOGIN_TIMEOUT: u16 = 4001;
    /// The session was kicked; a `kicked` frame preceded the close.
    pub const KICKED: u16 = 4002;
    /// No heartbeat within the announced bound.
    pub const HEARTBEAT_TIMEOUT: u16 = 4003;
    /// The instance logged out; the socket has nothing left to do.
    pub const LOGGED_OUT: u16 = 4004;
    /// The same instance logged in again on another socket; this one is stale. Not a kick:
    /// the instance itself is online elsewhere, so this socket must not reconnect.
    pub const SUPERSEDED: u16 = 4005;
    /// The page's `Origin` is not allowed to open `/ws` (`--allowed-origins`). Sent right
    /// after the handshake; nothing was read.
    pub const ORIGIN_NOT_ALLOWED: u16 = 4006;
    /// The server holds its maximum of connections (`--max-connections`): retry later.
    pub const SERVER_FULL: u16 = 4007;
    /// This client address holds its maximum of connections
    /// (`--max-connections-per-addr`).
    pub const TOO_MANY_CONNECTIONS: u16 = 4008;
    /// This client address opens connections too fast (`--connection-rate-per-addr`):
    /// back off.
    pub const CONNECTION_RATE: u16 = 4009;
    /// This client address sends login / resume / renew frames too fast
    /// (`--login-rate-per-addr`); a refused login got `error` 70050 first.
    pub const LOGIN_RATE: u16 = 4010;
    /// Server restarting: reconnect (with jitter) and resume. Standard code 1012.
    pub const SERVICE_RESTART: u16 = 1012;
    /// The server could not decide (cluster mode, Redis unreachable): reconnect later.
    /// The standard "Try Again Later"; the SDK reconnects with backoff as on any drop.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_their_own_codes() {
        let pairs = [
            (close::ORIGIN_NOT_ALLOWED, 2806),
            (close::SERVER_FULL, 2807),
            (close::TOO_MANY_CONNECTIONS, 2808),
            (close::CONNECTION_RATE, 2809),
            (close::LOGIN_RATE, 2810),
            (close::TRY_AGAIN_LATER, 2813),
        ];
        for (close, code) in pairs {
            assert_eq!(refusal_code(close), Some(code), "close {close}");
            // 28xx: the close code's last two digits.
            assert_eq!(code % 100, u32::from(close % 100));
            assert!(ERROR_CODES.iter().any(|&(_, c)| c == code));
        }
        for other in [
            1000, 1001, 1006, 1012, 4000, 4001, 4002, 4003, 4004, 4005, 4011,
        ] {
            assert_eq!(refusal_code(other), None, "close {other}");
        }
        // Names and values are unique.
        for (i, (name, code)) in ERROR_CODES.iter().enumerate() {
            for (other_name, other_code) in &ERROR_CODES[i + 1..] {
                assert!(name != other_name && code != other_code, "{name} {code}");
            }
        }
    }
}
