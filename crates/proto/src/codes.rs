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
