use alloc::borrow::ToOwned;
use alloc::collections::VecDeque;
use alloc::string::String;
use core::mem;

use tim_proto::{
    close, is_valid_user_id, refusal_code, ClientFrame, ErrorFrame, KickReason, Login, NetState,
    Platform, ServerFrame, ERR_SERVER_TIMEOUT, ERR_USERSIG_EXPIRED, ERR_USERSIG_RATE_LIMITED,
    SDK_CONNECTING_TOO_FAST, SDK_INVALID_OPERATION, SDK_LOGGED_OUT, SDK_LOGIN_TOO_FAST,
    SDK_NETWORK_ERROR, SDK_NETWORK_TIMEOUT, SDK_NO_IDENTIFIER, SDK_NO_NETWORK, SDK_NO_SDKAPPID,
    SDK_NO_USERSIG, SDK_ORIGIN_NOT_ALLOWED, SDK_REPEAT_LOGIN, SDK_SERVER_FULL,
    SDK_SERVER_UNAVAILABLE, SDK_TOO_MANY_CONNECTIONS, SDK_USER_NOT_LOGGED_IN,
};

use crate::backoff::Backoff;

/// Milliseconds on the driver's monotonic clock; only differences matter.
pub type Millis = u64;

/// Identifies one command, so its outcome ([`Event::Done`]) can settle the right Promise.
pub type OpId = u32;

/// After a wake-up (tab visible again, network back) a connection that looks up gets this
/// long to answer a ping before it counts as dead.
pub const WAKE_PROBE_MS: Millis = 5_000;

/// Longest slack given to a late server ping on top of two heartbeat intervals.
pub const DEAD_MARGIN_MS: Millis = 5_000;

/// How long a connection may stay silent before the session counts the server as gone: two
/// of the server's ping intervals plus a margin (half an interval, at most
/// [`DEAD_MARGIN_MS`]). The server pings every interval and the session answers from
/// [`Session::handle_frame`], so staying online takes no timer of ours; this deadline only
/// notices a dead server, late if the driver's timers are throttled (a hidden tab).
pub fn dead_after(heartbeat_ms: Millis) -> Millis {
    2 * heartbeat_ms + (heartbeat_ms / 2).min(DEAD_MARGIN_MS)
}

/// A renewal starts this long before expiry at most (at most half the UserSig's remaining
/// lifetime ahead, for short-lived ones).
pub const RENEW_AHEAD_MS: Millis = 5 * 60_000;

/// After a failed renewal (the page's `getUserSig` rejected, returned garbage, or the server
/// refused the UserSig), the next try comes this much later; the server ends the session at
/// expiry if none succeeds.
pub const RENEW_RETRY_MS: Millis = 5_000;

/// `getLoginStatus()` values (V2TIM's `V2TIM_STATUS_LOGINED` / `_LOGINING` / `_LOGOUT`).
pub const LOGIN_STATUS_LOGGED_IN: u8 = 1;
pub const LOGIN_STATUS_LOGGING_IN: u8 = 2;
pub const LOGIN_STATUS_LOGGED_OUT: u8 = 3;

/// A reconnect the server refused for now (close 4007-4010, 1013; a login put off) waits as
/// attempt this many at least: 2 to 4 s first, then doubling to the cap (see
/// `Backoff::refused_delay`).
pub const REFUSED_MIN_ATTEMPT: u32 = 2;

/// When to renew a UserSig that expires `expires_in` seconds from now.
pub fn renew_delay(expires_in: u64) -> Millis {
    let ttl = expires_in.saturating_mul(1_000);
    ttl - (ttl / 2).min(RENEW_AHEAD_MS)
}

#[derive(Debug, Clone)]
pub struct Config {
    pub sdkappid: u32,
    pub platform: Platform,
    /// This instance's id (one tab, one device); stable across reconnects.
    pub instance: String,
    /// A login (or a resume) with no answer within this long fails: the login rejects with
    /// `NETWORK_TIMEOUT`, a resume retries on a new connection.
    pub login_timeout_ms: Millis,
    /// A logout waits this long for the server's acknowledgement, then completes anyway:
    /// closing the socket ends the session on the server too.
    pub logout_timeout_ms: Millis,
    /// Reconnect delays: full jitter between the minimum and an exponentially growing cap.
    pub reconnect_min_ms: Millis,
    pub reconnect_max_ms: Millis,
    /// Seeds the reconnect jitter (the driver passes real randomness; tests a constant).
    pub seed: u64,
    /// The page can supply fresh UserSigs (`getUserSig`): ask for one ahead of expiry
    /// ([`Event::RenewUserSig`]) and renew the session without dropping it.
    pub renew: bool,
    /// The server's URL and the page's origin (`""` when unknown), named in error messages
    /// so that they say what to fix. See [`Session::set_endpoint`].
    pub server: String,
    pub origin: String,
}

impl Config {
    pub fn new(sdkappid: u32, platform: Platform, instance: String) -> Config {
        Config {
            sdkappid,
            platform,
            instance,
            login_timeout_ms: 10_000,
            logout_timeout_ms: 3_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 20_000,
            seed: 0x5EED,
            renew: false,
            server: String::new(),
            origin: String::new(),
        }
    }
}

/// What the driver must do with the socket, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Io {
    /// Open a new socket to the server (no socket is open when this is emitted).
    Connect,
    /// Send this frame on the open socket.
    Send(ClientFrame),
    /// Close the socket and drop its handlers; no [`Session::handle_close`] is expected.
    Close,
}

/// An error as the page sees it: `{ code, message }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkError {
    pub code: u32,
    pub message: String,
}

impl SdkError {
    pub fn new(code: u32, message: impl Into<String>) -> SdkError {
        SdkError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOk {
    /// `repeat`: the same user was already logged in on this instance.
    Login {
        repeat: bool,
    },
    Logout,
    Destroy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `SDK_READY`.
    Ready,
    /// `SDK_NOT_READY`.
    NotReady,
    /// `KICKED_OUT` with its type.
    Kicked(KickReason),
    /// `NET_STATE_CHANGE`.
    NetState(NetState),
    /// `ERROR`: something went wrong outside any call.
    Error(SdkError),
    /// `SDK_DESTROY`: `destroy()` has finished (after its `SDK_NOT_READY`, if any).
    Destroyed,
    /// Time to renew: call the page's `getUserSig`, then [`Session::renew`] with its
    /// result (or [`Session::renew_failed`]). For the driver; not a page event.
    RenewUserSig,
    /// A command finished; settle its Promise.
    Done {
        op: OpId,
        result: Result<OpOk, SdkError>,
    },
}

/// Where the session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not logged in (never, logged out, or after a failed login).
    Idle,
    /// The socket is opening; the login frame goes out once it is open.
    Connecting {
        user: String,
        usersig: String,
        op: OpId,
    },
    /// The login frame is out; waiting for `login_ok` or `error`.
    LoggingIn {
        user: String,
        usersig: String,
        op: OpId,
        seq: u32,
        /// The server answered 70050, and a `ping` went out to learn why: too many bad
        /// UserSigs for this user (the server answers the ping), or logins too fast from this
        /// address (it closes with 4010 instead). The login fails with one or the other.
        refused: Option<SdkError>,
    },
    /// Logged in (`SDK_READY` was emitted); the connection may be up or coming back.
    Online(Online, Link),
    /// `logout` sent; waiting for `logout_ok`.
    LoggingOut {
        op: OpId,
        seq: u32,
    },
    /// Kicked out: stays out until the page calls `login` again (never by itself).
    Kicked(KickReason),
    Destroyed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Online {
    user: String,
    /// Kept to log in again when the server no longer knows the ticket.
    usersig: String,
    ticket: String,
    heartbeat_ms: Millis,
    expire_at: u64,
}

/// The connection of an online session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    /// Lost; the next attempt is due at `retry_at` (`None`: when the network is back).
    Waiting {
        attempt: u32,
        retry_at: Option<Millis>,
    },
    /// A new socket is opening.
    Opening {
        attempt: u32,
    },
    /// `resume` sent with the ticket.
    Resuming {
        attempt: u32,
        seq: u32,
    },
    /// The ticket was refused; `login` sent with the kept UserSig.
    Relogging {
        attempt: u32,
        seq: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Closed,
    Opening,
    Open,
}

pub struct Session {
    config: Config,
    state: State,
    socket: Socket,
    next_seq: u32,
    next_op: OpId,
    backoff: Backoff,
    io: VecDeque<Io>,
    events: VecDeque<Event>,
    /// When the pending login, logout or resume gives up.
    op_deadline: Option<Millis>,
    /// When silence from the server means the connection is dead (while the link is up);
    /// every frame from the server (its pings included) moves it.
    dead_at: Option<Millis>,
    /// The last `NET_STATE_CHANGE` emitted, so each change is reported once.
    net: Option<NetState>,
    /// Renewal: when to ask for a fresh UserSig, the `renew` frame in flight, and whether
    /// a fresh UserSig waits for the connection to come back.
    renew_at: Option<Millis>,
    renew_seq: Option<u32>,
    renew_unsent: bool,
    /// The browser said it is offline (and has not said online since).
    offline: bool,
    /// The code of the last `ERROR` a refused reconnect reported, so that an outage reports
    /// each refusal once, not once per attempt; cleared when the connection is back.
    reported: Option<u32>,
}

impl Session {
    pub fn new(config: Config) -> Session {
        let backoff = Backoff::new(
            config.reconnect_min_ms,
            config.reconnect_max_ms,
            config.seed,
        );
        Session {
            config,
            state: State::Idle,
            socket: Socket::Closed,
            next_seq: 1,
            next_op: 1,
            backoff,
            io: VecDeque::new(),
            events: VecDeque::new(),
            op_deadline: None,
            dead_at: None,
            net: None,
            renew_at: None,
            renew_seq: None,
            renew_unsent: false,
            offline: false,
            reported: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server's URL and the page's origin, for error messages (known once the driver
    /// starts connecting: an SDK imported during server-side rendering reads nothing of the
    /// page before it needs to).
    pub fn set_endpoint(&mut self, server: String, origin: String) {
        self.config.server = server;
        self.config.origin = origin;
    }

    /// The instance id may change before the first login (a duplicated tab takes a new one).
    /// A login started before the id was known waits (connected) for it; the socket
    /// opens meanwhile, so claiming the id costs no time.
    pub fn set_instance(&mut self, now: Millis, instance: String) {
        self.config.instance = instance;
        if self.socket == Socket::Open {
            self.handle_open_again(now);
        }
    }

    /// The logged-in UserID, or `""` (as `getLoginUser()` answers).
    pub fn login_user(&self) -> &str {
        match &self.state {
            State::Online(online, _) => &online.user,
            _ => "",
        }
    }

    /// Logged in: `SDK_READY` was emitted and no `SDK_NOT_READY` / `KICKED_OUT` since. Stays
    /// true while a lost connection comes back.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Online(..))
    }

    /// Logged in with the connection up.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Online(_, Link::Up))
    }

    /// `getLoginStatus()`: [`LOGIN_STATUS_LOGGED_IN`] while online (a lost connection
    /// coming back included) or logging out, [`LOGIN_STATUS_LOGGING_IN`] while a login is
    /// under way, else [`LOGIN_STATUS_LOGGED_OUT`].
    pub fn login_status(&self) -> u8 {
        match self.state {
            State::Online(..) | State::LoggingOut { .. } => LOGIN_STATUS_LOGGED_IN,
            State::Connecting { .. } | State::LoggingIn { .. } => LOGIN_STATUS_LOGGING_IN,
            State::Idle | State::Kicked(_) | State::Destroyed => LOGIN_STATUS_LOGGED_OUT,
        }
    }

    pub fn is_destroyed(&self) -> bool {
        self.state == State::Destroyed
    }

    /// The kick that ended the session, until the next login.
    pub fn kicked(&self) -> Option<KickReason> {
        match self.state {
            State::Kicked(reason) => Some(reason),
            _ => None,
        }
    }

    /// Unix seconds at which the current UserSig expires, while online.
    pub fn expire_at(&self) -> Option<u64> {
        match &self.state {
            State::Online(online, _) => Some(online.expire_at),
            _ => None,
        }
    }

    /// The session ticket handed out at login, while online.
    pub fn ticket(&self) -> Option<&str> {
        match &self.state {
            State::Online(online, _) => Some(&online.ticket),
            _ => None,
        }
    }

    pub fn poll_io(&mut self) -> Option<Io> {
        self.io.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest time [`Session::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let retry = match self.state {
            State::Online(_, Link::Waiting { retry_at, .. }) => retry_at,
            _ => None,
        };
        let renew = self
            .renew_at
            .filter(|_| matches!(self.state, State::Online(..)));
        [self.op_deadline, self.dead_at, retry, renew]
            .into_iter()
            .flatten()
            .min()
    }

    /// `tim.login({ userID, userSig })`.
    pub fn login(&mut self, now: Millis, user: &str, usersig: &str) -> OpId {
        let op = self.new_op();
        // After `destroy` every call is an invalid operation, whatever its arguments.
        let checked = if self.is_destroyed() {
            Err(destroyed())
        } else {
            self.check_login(user, usersig)
        };
        if let Err(e) = checked {
            self.done(op, Err(e));
            return op;
        }
        match mem::replace(&mut self.state, State::Idle) {
            State::Destroyed => {
                self.state = State::Destroyed;
                self.done(op, Err(destroyed()));
            }
            s @ (State::Connecting { .. } | State::LoggingIn { .. }) => {
                self.state = s;
                self.done(
                    op,
                    Err(SdkError::new(
                        SDK_REPEAT_LOGIN,
                        "a login is already under way on this instance",
                    )),
                );
            }
            State::Online(mut online, link) if online.user == user => {
                // The newest UserSig is the one to log in again with, should that be needed.
                online.usersig = usersig.to_owned();
                self.state = State::Online(online, link);
                self.done(op, Ok(OpOk::Login { repeat: true }));
            }
            State::Online(_, link) => {
                // Account switch: the old user's session on this instance ends first.
                self.stop_heartbeat();
                self.events.push_back(Event::NotReady);
                if link == Link::Up {
                    let seq = self.new_seq();
                    self.io.push_back(Io::Send(ClientFrame::Logout { seq }));
                    self.send_login(now, user, usersig, op);
                } else {
                    self.close_socket();
                    self.connect_for_login(now, user, usersig, op);
                }
            }
            State::LoggingOut { op: logout_op, .. } => {
                // The logout frame is already out; the login follows it on the same socket.
                self.done(logout_op, Ok(OpOk::Logout));
                self.events.push_back(Event::NotReady);
                self.send_login(now, user, usersig, op);
            }
            s @ (State::Idle | State::Kicked(_))
                if self.offline && self.socket == Socket::Closed =>
            {
                // Documented: no waiting for the network; the page retries on `online`.
                self.state = s;
                self.done(
                    op,
                    Err(SdkError::new(
                        SDK_NO_NETWORK,
                        "no network: the browser is offline",
                    )),
                );
            }
            State::Idle | State::Kicked(_) => self.connect_for_login(now, user, usersig, op),
        }
        op
    }

    /// `tim.logout()`: ends this instance's session only.
    pub fn logout(&mut self, now: Millis) -> OpId {
        let op = self.new_op();
        match mem::replace(&mut self.state, State::Idle) {
            State::Destroyed => {
                self.state = State::Destroyed;
                self.done(op, Err(destroyed()));
            }
            State::Online(_, Link::Up) => {
                self.stop_heartbeat();
                let seq = self.new_seq();
                self.io.push_back(Io::Send(ClientFrame::Logout { seq }));
                self.op_deadline = Some(now + self.config.logout_timeout_ms);
                self.state = State::LoggingOut { op, seq };
            }
            State::Online(_, _) => {
                // No connection to say it on: the server frees the slot after its grace period.
                self.close_socket();
                self.op_deadline = None;
                self.events.push_back(Event::NotReady);
                self.done(op, Ok(OpOk::Logout));
            }
            State::Connecting { op: login_op, .. } | State::LoggingIn { op: login_op, .. } => {
                // Abandon the login: closing the socket ends it on the server as well.
                self.close_socket();
                self.op_deadline = None;
                self.done(
                    login_op,
                    Err(SdkError::new(
                        SDK_LOGGED_OUT,
                        "logged out before the login completed",
                    )),
                );
                self.done(op, Ok(OpOk::Logout));
            }
            s @ State::LoggingOut { .. } => {
                // Completes together with the logout already under way.
                self.state = s;
                self.done(op, Ok(OpOk::Logout));
            }
            s @ (State::Idle | State::Kicked(_)) => {
                self.state = s;
                self.done(
                    op,
                    Err(SdkError::new(SDK_USER_NOT_LOGGED_IN, "not logged in")),
                );
            }
        }
        op
    }

    /// `tim.destroy()`: logout, close the socket, settle everything. After it every command
    /// fails with `INVALID_OPERATION`.
    pub fn destroy(&mut self, _now: Millis) -> OpId {
        let op = self.new_op();
        match mem::replace(&mut self.state, State::Destroyed) {
            State::Destroyed => {
                self.done(op, Err(destroyed()));
                return op;
            }
            State::Online(_, link) => {
                if link == Link::Up {
                    let seq = self.new_seq();
                    self.io.push_back(Io::Send(ClientFrame::Logout { seq }));
                }
                self.events.push_back(Event::NotReady);
            }
            State::Connecting { op: login_op, .. } | State::LoggingIn { op: login_op, .. } => {
                self.done(login_op, Err(destroyed()));
            }
            State::LoggingOut { op: logout_op, .. } => {
                self.done(logout_op, Ok(OpOk::Logout));
                self.events.push_back(Event::NotReady);
            }
            State::Idle | State::Kicked(_) => {}
        }
        self.close_socket();
        self.op_deadline = None;
        self.stop_heartbeat();
        self.events.push_back(Event::Destroyed);
        self.done(op, Ok(OpOk::Destroy));
        op
    }

    /// The page's `getUserSig` gave a fresh UserSig: renew the session with it (now, or as
    /// soon as the connection is back).
    pub fn renew(&mut self, now: Millis, usersig: &str) {
        let State::Online(online, link) = &mut self.state else {
            return;
        };
        if usersig.is_empty() {
            return self.renew_failed(now);
        }
        online.usersig = usersig.to_owned();
        if *link == Link::Up {
            self.send_renew();
        } else {
            self.renew_unsent = true;
        }
    }

    /// The page's `getUserSig` failed or gave no UserSig: try again later.
    pub fn renew_failed(&mut self, now: Millis) {
        if matches!(self.state, State::Online(..)) {
            self.renew_seq = None;
            self.renew_at = Some(now + RENEW_RETRY_MS);
        }
    }

    fn send_renew(&mut self) {
        let State::Online(online, _) = &self.state else {
            return;
        };
        let usersig = online.usersig.clone();
        let seq = self.new_seq();
        self.io
            .push_back(Io::Send(ClientFrame::Renew { seq, usersig }));
        self.renew_seq = Some(seq);
        self.renew_unsent = false;
    }

    /// Schedules the next renewal for a UserSig expiring `expires_in` seconds from now.
    /// Every session going online calls it, so nothing of an earlier session's renewal
    /// survives into the next (and renewal state is inert while not online).
    fn schedule_renewal(&mut self, now: Millis, expires_in: u64) {
        self.renew_seq = None;
        self.renew_unsent = false;
        self.renew_at = self
            .config
            .renew
            .then(|| now.saturating_add(renew_delay(expires_in)));
    }

    /// The socket the driver opened for [`Io::Connect`] is open.
    pub fn handle_open(&mut self, now: Millis) {
        if self.socket != Socket::Opening {
            return;
        }
        self.socket = Socket::Open;
        match mem::replace(&mut self.state, State::Idle) {
            s @ State::Connecting { .. } => {
                self.net_state(NetState::Connected);
                self.state = s;
                self.handle_open_again(now);
            }
            State::Online(online, Link::Opening { attempt }) => {
                let seq = self.new_seq();
                self.io.push_back(Io::Send(ClientFrame::Resume {
                    seq,
                    ticket: online.ticket.clone(),
                }));
                self.op_deadline = Some(now + self.config.login_timeout_ms);
                self.state = State::Online(online, Link::Resuming { attempt, seq });
            }
            s => self.state = s,
        }
    }

    /// A frame arrived on the open socket.
    pub fn handle_frame(&mut self, now: Millis, frame: ServerFrame) {
        if let State::Online(online, Link::Up) = &self.state {
            // Any frame proves the connection alive.
            self.dead_at = Some(now + dead_after(online.heartbeat_ms));
        }
        match frame {
            ServerFrame::LoginOk(ok) => match mem::replace(&mut self.state, State::Idle) {
                State::LoggingIn {
                    user,
                    usersig,
                    op,
                    seq,
                    refused: None,
                } if seq == ok.seq => {
                    let online = Online {
                        user,
                        usersig,
                        ticket: ok.ticket,
                        heartbeat_ms: Millis::from(ok.heartbeat_ms.max(1_000)),
                        expire_at: ok.expire_at,
                    };
                    self.link_up(now, online);
                    self.schedule_renewal(now, ok.expires_in);
                    self.done(op, Ok(OpOk::Login { repeat: false }));
                    self.events.push_back(Event::Ready);
                }
                State::Online(mut online, Link::Relogging { seq, .. }) if seq == ok.seq => {
                    // Back under a new ticket; for the page it is the same session.
                    online.ticket = ok.ticket;
                    online.heartbeat_ms = Millis::from(ok.heartbeat_ms.max(1_000));
                    online.expire_at = ok.expire_at;
                    self.link_up(now, online);
                    self.schedule_renewal(now, ok.expires_in);
                }
                s => self.state = s,
            },
            ServerFrame::ResumeOk {
                seq,
                heartbeat_ms,
                expire_at,
                expires_in,
            } => match mem::replace(&mut self.state, State::Idle) {
                State::Online(mut online, Link::Resuming { seq: s, .. }) if s == seq => {
                    online.heartbeat_ms = Millis::from(heartbeat_ms.max(1_000));
                    online.expire_at = expire_at;
                    self.link_up(now, online);
                    if self.renew_unsent {
                        self.send_renew();
                    } else if self.renew_seq.is_none() && self.renew_at.is_none() {
                        self.schedule_renewal(now, expires_in);
                    }
                }
                s => self.state = s,
            },
            ServerFrame::RenewOk {
                seq,
                ticket,
                expire_at,
                expires_in,
            } => {
                if let State::Online(online, _) = &mut self.state {
                    if self.renew_seq == Some(seq) {
                        online.ticket = ticket;
                        online.expire_at = expire_at;
                        self.schedule_renewal(now, expires_in);
                    }
                }
            }
            ServerFrame::LogoutOk { seq } => {
                if matches!(self.state, State::LoggingOut { seq: s, .. } if s == seq) {
                    self.finish_logout();
                }
            }
            ServerFrame::Error(ErrorFrame {
                seq: Some(seq),
                code,
                message,
            }) => self.request_failed(now, seq, SdkError { code, message }),
            ServerFrame::Error(ErrorFrame {
                seq: None,
                code,
                message,
            }) => self
                .events
                .push_back(Event::Error(SdkError { code, message })),
            ServerFrame::Kicked { reason } => self.kick(reason),
            ServerFrame::Pong => {
                // The server answered the ping after a 70050: not the address's login rate.
                if let Some((op, error)) = self.take_refused_login() {
                    self.close_socket();
                    self.done(op, Err(error));
                }
            }
            // Answered here, from the socket's message handler: the server keeps a socket
            // that answers, however throttled the page's timers are.
            ServerFrame::Ping => {
                if self.socket == Socket::Open {
                    self.io.push_back(Io::Send(ClientFrame::Pong));
                }
            }
        }
    }

    /// The socket closed (or failed to open) without the session asking for it; `code` is
    /// the WebSocket close code (1006 when there was none).
    pub fn handle_close(&mut self, now: Millis, code: u16) {
        if self.socket == Socket::Closed {
            return;
        }
        self.socket = Socket::Closed;
        if code == close::SUPERSEDED && matches!(self.state, State::Online(..)) {
            // This instance id logged in on another connection: another live tab shares it.
            // Step aside for good rather than take it back (no kick loop).
            self.kick(KickReason::MultipleAccount);
            return;
        }
        match refusal_code(code) {
            Some(code) => self.refused(now, self.refusal(code)),
            None => match self.take_refused_login() {
                // A 70050 not followed by 4010: the UserSig failure limit.
                Some((op, error)) => self.done(op, Err(error)),
                None => self.connection_lost(now, false),
            },
        }
    }

    /// The driver could not open a socket at all (no `WebSocket` in this environment, a
    /// malformed server URL): a failed connection, and a login in progress fails with `why`.
    pub fn handle_connect_failed(&mut self, now: Millis, why: &str) {
        if let (Socket::Opening, State::Connecting { .. }) = (self.socket, &self.state) {
            self.socket = Socket::Closed;
            if let State::Connecting { op, .. } = mem::replace(&mut self.state, State::Idle) {
                self.op_deadline = None;
                self.net_state(NetState::Disconnected);
                self.done(op, Err(SdkError::new(SDK_NETWORK_ERROR, why)));
            }
        } else {
            self.handle_close(now, 1006);
        }
    }

    /// The browser reports the network gone (`offline`, or `navigator.onLine` false at
    /// start): stop retrying until it is back; a login meanwhile fails with `NO_NETWORK`.
    pub fn handle_offline(&mut self, now: Millis) {
        self.offline = true;
        if let State::Online(_, link) = self.state {
            self.net_state(NetState::Disconnected);
            if link == Link::Up || self.socket != Socket::Closed {
                self.close_socket();
                self.connection_lost(now, false);
            }
            if let State::Online(_, Link::Waiting { retry_at, .. }) = &mut self.state {
                *retry_at = None;
            }
        }
    }

    /// The browser reports the network back (`online`): reconnect at once.
    pub fn handle_online(&mut self, now: Millis) {
        self.offline = false;
        self.handle_wake(now);
    }

    /// A moment to check the connection at once: the tab became visible, the machine woke
    /// up. Waiting reconnects start now; a connection that looks up must answer a ping
    /// within [`WAKE_PROBE_MS`]. Nothing while the browser says it is offline.
    pub fn handle_wake(&mut self, now: Millis) {
        if self.offline {
            return;
        }
        match &mut self.state {
            State::Online(_, Link::Waiting { retry_at, .. }) => {
                *retry_at = Some(now);
                self.net_state(NetState::Connecting);
                self.handle_timeout(now);
            }
            State::Online(_, Link::Up) => {
                self.io.push_back(Io::Send(ClientFrame::Ping));
                let probe = now + WAKE_PROBE_MS;
                self.dead_at = Some(self.dead_at.map_or(probe, |d| d.min(probe)));
            }
            _ => {}
        }
    }

    /// Call at (or after) the time [`Session::poll_timeout`] returned.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.op_deadline.is_some_and(|t| now >= t) {
            self.op_deadline = None;
            match mem::replace(&mut self.state, State::Idle) {
                State::LoggingIn {
                    op,
                    refused: Some(error),
                    ..
                } => {
                    self.close_socket();
                    self.done(op, Err(error));
                }
                State::Connecting { op, .. } | State::LoggingIn { op, .. } => {
                    self.close_socket();
                    self.done(
                        op,
                        Err(SdkError::new(
                            SDK_NETWORK_TIMEOUT,
                            "login timed out: no answer from the server",
                        )),
                    );
                }
                s @ State::LoggingOut { .. } => {
                    self.state = s;
                    self.finish_logout();
                }
                s @ State::Online(..) => {
                    // A resume (or re-login) got no answer: try again on a new connection.
                    self.state = s;
                    self.close_socket();
                    self.connection_lost(now, false);
                }
                s => self.state = s,
            }
        }
        if self.dead_at.is_some_and(|t| now >= t) {
            // The server has been silent for two of its pings (and a margin): dead.
            self.close_socket();
            self.connection_lost(now, false);
        }
        if let State::Online(_, Link::Waiting { attempt, retry_at }) = self.state {
            if retry_at.is_some_and(|t| now >= t) {
                self.socket = Socket::Opening;
                self.io.push_back(Io::Connect);
                // A connection that never opens (a black-holed handshake) is given up too.
                self.op_deadline = Some(now + self.config.login_timeout_ms);
                self.state = match mem::replace(&mut self.state, State::Idle) {
                    State::Online(online, _) => State::Online(online, Link::Opening { attempt }),
                    s => s,
                };
            }
        }
        if self.renew_at.is_some_and(|t| now >= t) && matches!(self.state, State::Online(..)) {
            self.renew_at = None;
            self.events.push_back(Event::RenewUserSig);
        }
    }

    fn check_login(&self, user: &str, usersig: &str) -> Result<(), SdkError> {
        if self.config.sdkappid == 0 {
            return Err(SdkError::new(
                SDK_NO_SDKAPPID,
                "SDKAppID is missing: pass it to TIM.create({ SDKAppID })",
            ));
        }
        if !is_valid_user_id(user) {
            return Err(SdkError::new(
                SDK_NO_IDENTIFIER,
                "userID must be 1 to 32 characters of A-Z, a-z, 0-9, _ and -",
            ));
        }
        if usersig.is_empty() {
            return Err(SdkError::new(SDK_NO_USERSIG, "userSig is missing"));
        }
        Ok(())
    }

    /// Starts a login from no connection (or reuses an open one).
    fn connect_for_login(&mut self, now: Millis, user: &str, usersig: &str, op: OpId) {
        self.op_deadline = Some(now + self.config.login_timeout_ms);
        self.state = State::Connecting {
            user: user.to_owned(),
            usersig: usersig.to_owned(),
            op,
        };
        match self.socket {
            Socket::Open => self.handle_open_again(now),
            Socket::Closed => {
                self.socket = Socket::Opening;
                self.io.push_back(Io::Connect);
                self.net_state(NetState::Connecting);
            }
            Socket::Opening => {}
        }
    }

    /// `Connecting` on a socket that is already open: send the login right away, once the
    /// instance id is known (see [`Session::set_instance`]).
    fn handle_open_again(&mut self, now: Millis) {
        if self.config.instance.is_empty() || !matches!(self.state, State::Connecting { .. }) {
            return;
        }
        if let State::Connecting { user, usersig, op } = mem::replace(&mut self.state, State::Idle)
        {
            self.send_login(now, &user, &usersig, op);
        }
    }

    fn send_login(&mut self, now: Millis, user: &str, usersig: &str, op: OpId) {
        let seq = self.send_login_frame(user, usersig);
        self.op_deadline = Some(now + self.config.login_timeout_ms);
        self.state = State::LoggingIn {
            user: user.to_owned(),
            usersig: usersig.to_owned(),
            op,
            seq,
            refused: None,
        };
    }

    fn send_login_frame(&mut self, user: &str, usersig: &str) -> u32 {
        let seq = self.new_seq();
        self.io.push_back(Io::Send(ClientFrame::Login(Login {
            seq,
            sdkappid: self.config.sdkappid,
            user: user.to_owned(),
            usersig: usersig.to_owned(),
            platform: self.config.platform,
            instance: self.config.instance.clone(),
        })));
        seq
    }

    /// The connection of an online session is (again) up.
    fn link_up(&mut self, now: Millis, online: Online) {
        self.op_deadline = None;
        self.reported = None;
        self.dead_at = Some(now + dead_after(online.heartbeat_ms));
        self.state = State::Online(online, Link::Up);
        self.net_state(NetState::Connected);
    }

    /// The server answered request `seq` with an error.
    fn request_failed(&mut self, now: Millis, seq: u32, error: SdkError) {
        if self.renew_seq == Some(seq) {
            return self.renew_failed(now);
        }
        match mem::replace(&mut self.state, State::Idle) {
            State::LoggingIn {
                seq: s,
                op,
                user,
                usersig,
                refused: None,
            } if s == seq && error.code == ERR_USERSIG_RATE_LIMITED => {
                // Which limit? A ping tells (see `State::LoggingIn::refused`).
                self.io.push_back(Io::Send(ClientFrame::Ping));
                let probe = now + WAKE_PROBE_MS;
                self.op_deadline = Some(self.op_deadline.map_or(probe, |d| d.min(probe)));
                self.state = State::LoggingIn {
                    user,
                    usersig,
                    op,
                    seq,
                    refused: Some(error),
                };
            }
            State::LoggingIn { seq: s, op, .. } if s == seq => {
                self.op_deadline = None;
                self.close_socket();
                self.done(op, Err(error));
            }
            // The server did not know the session any more: it is over all the same.
            State::LoggingOut { op, seq: pending } => {
                self.state = State::LoggingOut { op, seq: pending };
                if pending == seq {
                    self.finish_logout();
                }
            }
            s @ State::Online(_, Link::Resuming { seq: r, .. })
                if r == seq && error.code == ERR_SERVER_TIMEOUT =>
            {
                // Put off (cluster mode, Redis unreachable; close 1013 follows): again later.
                self.state = s;
                self.close_socket();
                self.refused(now, self.refusal(SDK_SERVER_UNAVAILABLE));
            }
            State::Online(online, Link::Resuming { attempt, seq: s }) if s == seq => {
                // The ticket is unusable (e.g. it expired): log in again with the UserSig.
                let seq = self.send_login_frame(&online.user, &online.usersig);
                self.op_deadline = Some(now + self.config.login_timeout_ms);
                self.state = State::Online(online, Link::Relogging { attempt, seq });
            }
            State::Online(online, link @ Link::Relogging { seq: s, .. }) if s == seq => {
                // The UserSig no longer logs in: the session is over.
                if error.code == ERR_USERSIG_EXPIRED {
                    self.state = State::Online(online, link);
                    self.kick(KickReason::UserSigExpired);
                } else if matches!(error.code, ERR_USERSIG_RATE_LIMITED | ERR_SERVER_TIMEOUT) {
                    // Put off, not refused: logins too fast from this address (the kept
                    // UserSig is valid, so 70050 is the address's rate; close 4010 follows),
                    // or the session store unreachable (70169). Again later, with backoff,
                    // reported as the close codes of those are.
                    let error = self.refusal(if error.code == ERR_USERSIG_RATE_LIMITED {
                        SDK_LOGIN_TOO_FAST
                    } else {
                        SDK_SERVER_UNAVAILABLE
                    });
                    self.state = State::Online(online, link);
                    self.close_socket();
                    self.refused(now, error);
                } else {
                    self.op_deadline = None;
                    self.stop_heartbeat();
                    self.close_socket();
                    self.events.push_back(Event::Error(error));
                    self.events.push_back(Event::NotReady);
                }
            }
            s => self.state = s,
        }
    }

    /// The server refused the connection (or put a login off): a login in progress fails
    /// with `error`; an online session reports it (`ERROR`, once per outage and code) and
    /// reconnects with the longer backoff of a refusal, except for a refused origin, which
    /// will not change by itself: that session ends (`ERROR`, then `SDK_NOT_READY`).
    fn refused(&mut self, now: Millis, error: SdkError) {
        self.socket = Socket::Closed;
        match mem::replace(&mut self.state, State::Idle) {
            State::Connecting { op, .. } | State::LoggingIn { op, .. } => {
                self.op_deadline = None;
                self.net_state(NetState::Disconnected);
                self.done(op, Err(error));
            }
            State::Online(..) if error.code == SDK_ORIGIN_NOT_ALLOWED => {
                self.op_deadline = None;
                self.stop_heartbeat();
                self.events.push_back(Event::Error(error));
                self.net_state(NetState::Disconnected);
                self.events.push_back(Event::NotReady);
            }
            s => {
                self.state = s;
                if matches!(self.state, State::Online(..)) && self.reported != Some(error.code) {
                    self.reported = Some(error.code);
                    self.events.push_back(Event::Error(error));
                }
                self.connection_lost(now, true);
            }
        }
    }

    /// The error of a refusal (an SDK code of [`refusal_code`]), saying what to do about it.
    fn refusal(&self, code: u32) -> SdkError {
        let origin = match self.config.origin.as_str() {
            "" => "(unknown)",
            o => o,
        };
        let message = match code {
            SDK_ORIGIN_NOT_ALLOWED => [
                "timd refused this page's origin ",
                origin,
                ": start it with --allowed-origins ",
                origin,
                " (or TIMD_ALLOWED_ORIGINS)",
            ]
            .concat(),
            SDK_SERVER_FULL => "timd is full (--max-connections): try again later".into(),
            SDK_TOO_MANY_CONNECTIONS => {
                "too many connections from this address (timd --max-connections-per-addr)".into()
            }
            SDK_CONNECTING_TOO_FAST => "connecting too fast from this address (timd --connection-rate-per-addr): try again in a moment".into(),
            SDK_LOGIN_TOO_FAST => "logging in too fast from this address (timd --login-rate-per-addr): try again in a moment".into(),
            // SDK_SERVER_UNAVAILABLE (close 1013).
            _ => "timd's session store (Redis, cluster mode) is unreachable: try again later".into(),
        };
        SdkError { code, message }
    }

    /// A login waiting to learn why it got 70050 (see `State::LoggingIn::refused`), taken
    /// out: its op and that 70050.
    fn take_refused_login(&mut self) -> Option<(OpId, SdkError)> {
        if !matches!(
            self.state,
            State::LoggingIn {
                refused: Some(_),
                ..
            }
        ) {
            return None;
        }
        match mem::replace(&mut self.state, State::Idle) {
            State::LoggingIn {
                op,
                refused: Some(error),
                ..
            } => {
                self.op_deadline = None;
                self.net_state(NetState::Disconnected);
                Some((op, error))
            }
            _ => None,
        }
    }

    fn connection_lost(&mut self, now: Millis, refused: bool) {
        self.stop_heartbeat();
        self.socket = Socket::Closed;
        match mem::replace(&mut self.state, State::Idle) {
            State::Connecting { op, .. } | State::LoggingIn { op, .. } => {
                self.op_deadline = None;
                self.net_state(NetState::Disconnected);
                let message = match self.config.server.as_str() {
                    "" => "cannot reach the server".into(),
                    url => [
                        "cannot reach the server at ",
                        url,
                        ": check serverURL and that timd is running there",
                    ]
                    .concat(),
                };
                self.done(op, Err(SdkError::new(SDK_NETWORK_ERROR, message)));
            }
            State::Online(online, link) => {
                self.op_deadline = None;
                // A renewal in flight may never have arrived: send it again once back (the
                // fresh UserSig is the kept one).
                if self.renew_seq.take().is_some() {
                    self.renew_unsent = true;
                }
                let attempt = match link {
                    Link::Up => 0,
                    Link::Waiting { attempt, .. }
                    | Link::Opening { attempt }
                    | Link::Resuming { attempt, .. }
                    | Link::Relogging { attempt, .. } => attempt.saturating_add(1),
                };
                let (attempt, delay) = if refused {
                    let attempt = attempt.max(REFUSED_MIN_ATTEMPT);
                    (attempt, self.backoff.refused_delay(attempt))
                } else {
                    (attempt, self.backoff.delay(attempt))
                };
                let retry_at = Some(now + delay);
                self.state = State::Online(online, Link::Waiting { attempt, retry_at });
                if self.net != Some(NetState::Disconnected) {
                    self.net_state(NetState::Connecting);
                }
            }
            State::LoggingOut { op, seq } => {
                // The server ends the session when the socket closes.
                self.state = State::LoggingOut { op, seq };
                self.finish_logout();
            }
            s => self.state = s,
        }
    }

    fn finish_logout(&mut self) {
        let State::LoggingOut { op, .. } = mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        self.op_deadline = None;
        self.close_socket();
        self.events.push_back(Event::NotReady);
        self.done(op, Ok(OpOk::Logout));
    }

    /// Kicked: `KICKED_OUT`, then `SDK_NOT_READY` if the page had seen `SDK_READY` (the
    /// order of `tim-js-sdk` 2.27.6).
    fn kick(&mut self, reason: KickReason) {
        let was_ready = match mem::replace(&mut self.state, State::Kicked(reason)) {
            State::Online(..) => true,
            State::LoggingOut { op, .. } => {
                self.done(op, Ok(OpOk::Logout));
                true
            }
            State::Connecting { op, .. } | State::LoggingIn { op, .. } => {
                self.done(op, Err(SdkError::new(reason.sdk_code(), reason.as_str())));
                false
            }
            s @ (State::Idle | State::Kicked(_) | State::Destroyed) => {
                // Nothing of ours was online; keep what we had.
                self.state = s;
                return;
            }
        };
        self.op_deadline = None;
        self.stop_heartbeat();
        self.close_socket();
        self.events.push_back(Event::Kicked(reason));
        if was_ready {
            self.events.push_back(Event::NotReady);
        }
    }

    fn net_state(&mut self, state: NetState) {
        if self.net != Some(state) {
            self.net = Some(state);
            self.events.push_back(Event::NetState(state));
        }
    }

    fn close_socket(&mut self) {
        if self.socket != Socket::Closed {
            self.socket = Socket::Closed;
            self.io.push_back(Io::Close);
        }
    }

    fn stop_heartbeat(&mut self) {
        self.dead_at = None;
    }

    fn done(&mut self, op: OpId, result: Result<OpOk, SdkError>) {
        self.events.push_back(Event::Done { op, result });
    }

    fn new_op(&mut self) -> OpId {
        let op = self.next_op;
        self.next_op = self.next_op.wrapping_add(1).max(1);
        op
    }

    fn new_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        seq
    }
}

fn destroyed() -> SdkError {
    SdkError::new(
        SDK_INVALID_OPERATION,
        "this TIM instance was destroyed: create a new one",
    )
}
