use std::collections::VecDeque;

use tim_proto::{
    is_valid_user_id, ClientFrame, ErrorFrame, KickReason, Login, NetState, Platform, ServerFrame,
    SDK_INVALID_OPERATION, SDK_LOGGED_OUT, SDK_NETWORK_ERROR, SDK_NETWORK_TIMEOUT,
    SDK_NO_IDENTIFIER, SDK_NO_SDKAPPID, SDK_NO_USERSIG, SDK_REPEAT_LOGIN, SDK_USER_NOT_LOGGED_IN,
};

/// Milliseconds on the driver's monotonic clock; only differences matter.
pub type Millis = u64;

/// Identifies one command, so its outcome ([`Event::Done`]) can settle the right Promise.
pub type OpId = u32;

#[derive(Debug, Clone)]
pub struct Config {
    pub sdkappid: u32,
    pub platform: Platform,
    /// This instance's id (one tab, one device); stable across reconnects.
    pub instance: String,
    /// A login with no answer within this long rejects with `NETWORK_TIMEOUT`.
    pub login_timeout_ms: Millis,
    /// A logout waits this long for the server's acknowledgement, then completes anyway:
    /// closing the socket ends the session on the server too.
    pub logout_timeout_ms: Millis,
}

impl Config {
    pub fn new(sdkappid: u32, platform: Platform, instance: String) -> Config {
        Config {
            sdkappid,
            platform,
            instance,
            login_timeout_ms: 10_000,
            logout_timeout_ms: 3_000,
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
        op: OpId,
        seq: u32,
    },
    Ready(Online),
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
    ticket: String,
    heartbeat_ms: Millis,
    expire_at: u64,
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
    io: VecDeque<Io>,
    events: VecDeque<Event>,
    /// When the pending login or logout gives up.
    op_deadline: Option<Millis>,
    /// When the next heartbeat is due (while online).
    ping_at: Option<Millis>,
    /// When silence from the server means the connection is dead (while online).
    dead_at: Option<Millis>,
}

impl Session {
    pub fn new(config: Config) -> Session {
        Session {
            config,
            state: State::Idle,
            socket: Socket::Closed,
            next_seq: 1,
            next_op: 1,
            io: VecDeque::new(),
            events: VecDeque::new(),
            op_deadline: None,
            ping_at: None,
            dead_at: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The logged-in UserID, or `""` (as `getLoginUser()` answers).
    pub fn login_user(&self) -> &str {
        match &self.state {
            State::Ready(online) => &online.user,
            _ => "",
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
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
            State::Ready(online) => Some(online.expire_at),
            _ => None,
        }
    }

    /// The session ticket handed out at login, while online.
    pub fn ticket(&self) -> Option<&str> {
        match &self.state {
            State::Ready(online) => Some(&online.ticket),
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
        [self.op_deadline, self.ping_at, self.dead_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// `tim.login({ userID, userSig })`.
    pub fn login(&mut self, now: Millis, user: &str, usersig: &str) -> OpId {
        let op = self.new_op();
        if let Err(e) = self.check_login(user, usersig) {
            self.done(op, Err(e));
            return op;
        }
        match std::mem::replace(&mut self.state, State::Idle) {
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
            State::Ready(online) if online.user == user => {
                self.state = State::Ready(online);
                self.done(op, Ok(OpOk::Login { repeat: true }));
            }
            State::Ready(_) => {
                // Account switch: the old user's session on this instance ends first.
                self.stop_heartbeat();
                let seq = self.new_seq();
                self.io.push_back(Io::Send(ClientFrame::Logout { seq }));
                self.events.push_back(Event::NotReady);
                self.send_login(now, user, usersig, op);
            }
            State::LoggingOut { op: logout_op, .. } => {
                // The logout frame is already out; the login follows it on the same socket.
                self.done(logout_op, Ok(OpOk::Logout));
                self.events.push_back(Event::NotReady);
                self.send_login(now, user, usersig, op);
            }
            State::Idle | State::Kicked(_) => {
                self.op_deadline = Some(now + self.config.login_timeout_ms);
                self.state = State::Connecting {
                    user: user.to_owned(),
                    usersig: usersig.to_owned(),
                    op,
                };
                if self.socket == Socket::Open {
                    self.handle_open(now);
                } else if self.socket == Socket::Closed {
                    self.socket = Socket::Opening;
                    self.io.push_back(Io::Connect);
                    self.events.push_back(Event::NetState(NetState::Connecting));
                }
            }
        }
        op
    }

    /// `tim.logout()`: ends this instance's session only.
    pub fn logout(&mut self, now: Millis) -> OpId {
        let op = self.new_op();
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Destroyed => {
                self.state = State::Destroyed;
                self.done(op, Err(destroyed()));
            }
            State::Ready(_) => {
                self.stop_heartbeat();
                let seq = self.new_seq();
                self.io.push_back(Io::Send(ClientFrame::Logout { seq }));
                self.op_deadline = Some(now + self.config.logout_timeout_ms);
                self.state = State::LoggingOut { op, seq };
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
        match std::mem::replace(&mut self.state, State::Destroyed) {
            State::Destroyed => {
                self.done(op, Err(destroyed()));
                return op;
            }
            State::Ready(_) => {
                let seq = self.new_seq();
                self.io.push_back(Io::Send(ClientFrame::Logout { seq }));
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
        self.done(op, Ok(OpOk::Destroy));
        op
    }

    /// The socket the driver opened for [`Io::Connect`] is open.
    pub fn handle_open(&mut self, now: Millis) {
        if self.socket == Socket::Opening {
            self.socket = Socket::Open;
            self.events.push_back(Event::NetState(NetState::Connected));
        }
        if let State::Connecting { .. } = self.state {
            let State::Connecting { user, usersig, op } =
                std::mem::replace(&mut self.state, State::Idle)
            else {
                unreachable!()
            };
            self.send_login(now, &user, &usersig, op);
        }
    }

    /// A frame arrived on the open socket.
    pub fn handle_frame(&mut self, now: Millis, frame: ServerFrame) {
        if let State::Ready(online) = &self.state {
            // Any frame proves the connection alive.
            self.dead_at = Some(now + 2 * online.heartbeat_ms);
        }
        match frame {
            ServerFrame::LoginOk(ok) => {
                let State::LoggingIn { seq, .. } = self.state else {
                    return;
                };
                if seq != ok.seq {
                    return;
                }
                let State::LoggingIn { user, op, .. } =
                    std::mem::replace(&mut self.state, State::Idle)
                else {
                    unreachable!()
                };
                let heartbeat_ms = Millis::from(ok.heartbeat_ms.max(1_000));
                self.op_deadline = None;
                self.ping_at = Some(now + heartbeat_ms);
                self.dead_at = Some(now + 2 * heartbeat_ms);
                self.state = State::Ready(Online {
                    user,
                    ticket: ok.ticket,
                    heartbeat_ms,
                    expire_at: ok.expire_at,
                });
                self.done(op, Ok(OpOk::Login { repeat: false }));
                self.events.push_back(Event::Ready);
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
            }) => match self.state {
                State::LoggingIn { seq: s, op, .. } if s == seq => {
                    self.state = State::Idle;
                    self.op_deadline = None;
                    self.close_socket();
                    self.done(op, Err(SdkError { code, message }));
                }
                // The server did not know the session any more: it is over all the same.
                State::LoggingOut { seq: s, .. } if s == seq => self.finish_logout(),
                _ => {}
            },
            ServerFrame::Error(ErrorFrame {
                seq: None,
                code,
                message,
            }) => self
                .events
                .push_back(Event::Error(SdkError { code, message })),
            ServerFrame::Kicked { reason } => self.kick(reason),
            ServerFrame::Pong => {}
        }
    }

    /// The socket closed (or failed to open) without the session asking for it.
    pub fn handle_close(&mut self, _now: Millis) {
        if self.socket == Socket::Closed {
            return;
        }
        self.socket = Socket::Closed;
        self.connection_lost();
    }

    fn connection_lost(&mut self) {
        self.stop_heartbeat();
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Connecting { op, .. } | State::LoggingIn { op, .. } => {
                self.op_deadline = None;
                self.events
                    .push_back(Event::NetState(NetState::Disconnected));
                self.done(
                    op,
                    Err(SdkError::new(SDK_NETWORK_ERROR, "cannot reach the server")),
                );
            }
            State::Ready(_) => {
                self.events
                    .push_back(Event::NetState(NetState::Disconnected));
                self.events.push_back(Event::NotReady);
            }
            State::LoggingOut { op, .. } => {
                // The server ends the session when the socket closes.
                self.op_deadline = None;
                self.events.push_back(Event::NotReady);
                self.done(op, Ok(OpOk::Logout));
            }
            s => self.state = s,
        }
    }

    /// Call at (or after) the time [`Session::poll_timeout`] returned.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.op_deadline.is_some_and(|t| now >= t) {
            self.op_deadline = None;
            match std::mem::replace(&mut self.state, State::Idle) {
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
                s => self.state = s,
            }
        }
        if self.dead_at.is_some_and(|t| now >= t) {
            // The server has been silent for two heartbeats: the connection is dead.
            self.close_socket();
            self.connection_lost();
            return;
        }
        if let (Some(t), State::Ready(online)) = (self.ping_at, &self.state) {
            if now >= t {
                self.ping_at = Some(now + online.heartbeat_ms);
                self.io.push_back(Io::Send(ClientFrame::Ping));
            }
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

    fn send_login(&mut self, now: Millis, user: &str, usersig: &str, op: OpId) {
        let seq = self.new_seq();
        self.io.push_back(Io::Send(ClientFrame::Login(Login {
            seq,
            sdkappid: self.config.sdkappid,
            user: user.to_owned(),
            usersig: usersig.to_owned(),
            platform: self.config.platform,
            instance: self.config.instance.clone(),
        })));
        self.op_deadline = Some(now + self.config.login_timeout_ms);
        self.state = State::LoggingIn {
            user: user.to_owned(),
            op,
            seq,
        };
    }

    fn finish_logout(&mut self) {
        let State::LoggingOut { op, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        self.op_deadline = None;
        self.close_socket();
        self.events.push_back(Event::NotReady);
        self.done(op, Ok(OpOk::Logout));
    }

    fn kick(&mut self, reason: KickReason) {
        match std::mem::replace(&mut self.state, State::Kicked(reason)) {
            State::Ready(_) => {}
            State::LoggingOut { op, .. } => self.done(op, Ok(OpOk::Logout)),
            State::Connecting { op, .. } | State::LoggingIn { op, .. } => {
                self.done(op, Err(SdkError::new(reason.sdk_code(), reason.as_str())))
            }
            s @ (State::Idle | State::Kicked(_) | State::Destroyed) => {
                // Nothing of ours was online; keep what we had.
                self.state = s;
                return;
            }
        }
        self.op_deadline = None;
        self.stop_heartbeat();
        self.close_socket();
        self.events.push_back(Event::Kicked(reason));
    }

    fn close_socket(&mut self) {
        if self.socket != Socket::Closed {
            self.socket = Socket::Closed;
            self.io.push_back(Io::Close);
        }
    }

    fn stop_heartbeat(&mut self) {
        self.ping_at = None;
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
