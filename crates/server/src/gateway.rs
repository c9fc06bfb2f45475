//! The `/ws` WebSocket gateway: one task per socket owns the socket and selects over the
//! peer's messages, the registry's commands (kicks), its deadline and server shutdown.
//!
//! Nothing here holds a lock across an await, and nothing the peer sends can panic the task
//! or make it buffer without bound: frames are size-capped, replies wait at most
//! [`SEND_TIMEOUT`], and a socket that stops reading is dropped.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{HOST, ORIGIN, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tim_proto::{
    close, ClientFrame, ErrorFrame, KickReason, Login, LoginOk, ServerFrame, ERR_INTERNAL,
    ERR_INVALID_PARAMETERS, ERR_SERVER_TIMEOUT, ERR_USERSIG_RATE_LIMITED, MAX_FRAME_BYTES,
};
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use crate::apps::App;
use crate::backend::{BackendError, LoginDecision, Renewal, ResumeError};
use crate::callbacks::Change;
use crate::clock::unix_secs as unix_now;
use crate::events::Disconnect;
use crate::limits::{Admitted, Refusal};
use crate::login::LoginError;
use crate::session::{self, Commands, InstanceInfo, NewSession, ResumeRefused, SocketCommand};
use crate::state::AppState;

/// Initial read buffer per socket. tungstenite's default (128 KiB, allocated up front)
/// would dominate per-connection memory; a login frame is well under 1 KiB, and bigger
/// frames (up to `MAX_FRAME_BYTES`) are read in several chunks. 4 KiB measured 9.7 KiB per
/// idle session, 1 KiB 6.7 KiB (`scripts/bench.sh restart`).
const READ_BUFFER_BYTES: usize = 1024;
/// Outbound bytes a socket may have pending before sends fail (backpressure).
const MAX_WRITE_BUFFER_BYTES: usize = 2 * MAX_FRAME_BYTES;
/// A peer that does not take a frame within this is treated as gone.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// After sending a close frame, how long to wait for the peer's close before dropping the
/// TCP connection (closing first with unread input would reset it and could eat our close).
pub const CLOSE_DRAIN: Duration = Duration::from_secs(1);
/// The 70169 message of a resume put off by an unreachable Redis (a login's says the same:
/// `LoginError::Unavailable`).
const UNAVAILABLE: &str = "session store unreachable: retry later";
/// Longest peer-controlled text echoed back in an error message.
const MAX_ECHO: usize = 120;

/// Numbers sockets for the logs.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// `GET /ws`.
pub async fn ws_handler(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    // The request's own headers, read in place (the `HeaderMap` extractor copies them).
    let (mut parts, _) = request.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let headers = &parts.headers;
    let tracker = state.sockets().token();
    let id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    // Router-level tests have no peer: they count as one unspecified client.
    let peer_ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0 .0.ip());
    let client = state.config().trusted_proxies.client(peer_ip, headers);
    let span = tracing::debug_span!("socket", id, %client);
    let admitted = admit(&state, client, headers);
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(why) => {
            state.metrics().refused(why);
            tracing::info!(%client, reason = why.as_str(), "connection refused");
            // Upgraded only to say why with a close code (a failed handshake tells a
            // browser page nothing); nothing is read. Only so many at once: beyond that,
            // a flood of refused connections gets a plain 503 and costs no task.
            let Some(refusing) = state.limits().begin_refusal() else {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(RETRY_AFTER, "1")],
                    why.as_str(),
                )
                    .into_response();
            };
            return ws
                .max_message_size(MAX_FRAME_BYTES)
                .read_buffer_size(READ_BUFFER_BYTES)
                .on_upgrade(move |socket| {
                    async move {
                        refuse(socket, why).await;
                        drop(refusing);
                        drop(tracker);
                    }
                    .instrument(span)
                });
        }
    };
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            // Built here, not inside the task's future: that future holds the connection
            // once (the socket moved into it), not also the socket it was built from.
            let mut connection = Connection::new(state, socket, client);
            async move {
                connection.run().await;
                // The socket closes before its admission and its shutdown tracker end.
                drop(connection);
                drop(admitted);
                drop(tracker);
            }
            .instrument(span)
        })
}

/// The origin check, then the connection limits (`origins.rs`, `limits.rs`).
fn admit(state: &AppState, client: IpAddr, headers: &HeaderMap) -> Result<Admitted, Refusal> {
    let config = state.config();
    // A non-UTF-8 Origin is present but matches nothing.
    let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if !config.allowed_origins.allows(origin, host, config.demo) {
        return Err(Refusal::Origin);
    }
    state.limits().admit(client, Instant::now())
}

/// Closes a refused connection with its code, waiting briefly for the peer's close.
async fn refuse(mut socket: WebSocket, why: Refusal) {
    let frame = CloseFrame {
        code: why.close_code(),
        reason: why.as_str().into(),
    };
    let sent = tokio::time::timeout(CLOSE_DRAIN, socket.send(Message::Close(Some(frame)))).await;
    if matches!(sent, Ok(Ok(()))) {
        let drain = async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
    }
}

/// The current login of a socket.
struct Session {
    /// Its app: settings, key, tickets.
    app: Arc<App>,
    info: InstanceInfo,
    /// When the UserSig expires: the session then ends with `userSigExpired`.
    expires: Instant,
    /// When the server's next `ping` goes out (every heartbeat interval while logged in).
    ping_at: Instant,
}

impl Session {
    fn of(app: Arc<App>, info: InstanceInfo, heartbeat: Duration) -> Session {
        let left = info.expire_at.saturating_sub(unix_now());
        Session {
            app,
            ping_at: Instant::now() + heartbeat,
            // Capped so the Instant arithmetic cannot overflow on far-future expiries.
            expires: Instant::now() + Duration::from_secs(left.min(10 * 365 * 86_400)),
            info,
        }
    }
}

/// What the loop does after handling one event.
enum Flow {
    Continue,
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
    /// The peer is gone (or unwritable): just drop the socket.
    Gone,
}

struct Connection {
    state: AppState,
    socket: WebSocket,
    outbox: session::Outbox,
    commands: Commands,
    session: Option<Session>,
    /// While logged out: when the socket must have logged in.
    login_deadline: Instant,
    /// Last time anything arrived from the peer (liveness).
    last_seen: Instant,
    /// The client's address (`client_addr.rs`): what per-address limits count by.
    client: IpAddr,
    /// The heartbeat was lost (the console's disconnect reason).
    timed_out: bool,
}

impl Connection {
    fn new(state: AppState, socket: WebSocket, client: IpAddr) -> Connection {
        let (outbox, commands) = session::commands();
        let now = Instant::now();
        let login_deadline = now + state.config().login_timeout();
        Connection {
            state,
            socket,
            outbox,
            commands,
            session: None,
            login_deadline,
            last_seen: now,
            client,
            timed_out: false,
        }
    }

    /// When the socket times out (or its UserSig expires, or the next ping is due) if
    /// nothing else happens.
    fn deadline(&self) -> Instant {
        match &self.session {
            None => self.login_deadline,
            Some(s) => self.idle_deadline().min(s.expires).min(s.ping_at),
        }
    }

    /// A logged-in socket that sent nothing (no `pong` to our pings, no frame at all) for
    /// two heartbeat intervals is dead.
    fn idle_deadline(&self) -> Instant {
        self.last_seen + self.state.config().idle_timeout()
    }

    /// Runs the socket to its end. Borrows the connection, which its task's future holds:
    /// taken by value, it would be stored twice in that future (argument and local), and
    /// every socket's task keeps that future for its whole life.
    async fn run(&mut self) {
        tracing::debug!("socket opened");
        // Registered with the shutdown token once for the socket's life; every later wake-up
        // of this task reads one flag, set before the token is cancelled (polling the token
        // takes two locks that every socket shares, several times per login).
        let state = self.state.clone();
        let shutdown = state.shutdown_token().clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut registered = false;
        let timer = sleep_until(self.deadline());
        tokio::pin!(timer);
        let end = loop {
            let on_shutdown = std::future::poll_fn(|cx| {
                if state.shutting_down() {
                    return std::task::Poll::Ready(());
                }
                if registered {
                    // Its waiter wakes this task when the token is cancelled.
                    return std::task::Poll::Pending;
                }
                registered = true;
                cancelled.as_mut().poll(cx)
            });
            let flow = tokio::select! {
                // Biased: shutdown first, then registry commands (a kick must win over
                // frames the peer sent after it), then the peer, then the clock.
                biased;
                _ = on_shutdown => Flow::Close(close::SERVICE_RESTART, "server restarting"),
                // Boxed, as every rare step: its future (a callback report) would
                // otherwise size the one each socket keeps for its whole life.
                command = self.commands.recv() => Box::pin(self.on_command(command)).await,
                message = self.socket.recv() => {
                    self.last_seen = Instant::now();
                    let flow = self.on_message(message).await;
                    // A login, logout or renewal may move the deadline earlier; later ones
                    // are caught up lazily when the timer fires.
                    let deadline = self.deadline();
                    if deadline < timer.deadline() || self.session.is_none() {
                        timer.as_mut().reset(deadline);
                    }
                    flow
                }
                _ = &mut timer => {
                    // Lazily extended: frames only move `last_seen`, the timer catches up here.
                    let deadline = self.deadline();
                    if Instant::now() < deadline {
                        timer.as_mut().reset(deadline);
                        Flow::Continue
                    } else {
                        self.on_timeout().await
                    }
                }
            };
            // An elapsed timer left as it is would fire again at once: never spin.
            if timer.is_elapsed() {
                let floor = Instant::now() + Duration::from_millis(100);
                timer.as_mut().reset(self.deadline().max(floor));
            }
            match flow {
                Flow::Continue => {}
                Flow::Close(code, reason) => break Some((code, reason)),
                Flow::Gone => break None,
            }
        };
        Box::pin(self.socket_closed()).await;
        if let Some((code, reason)) = end {
            self.close(code, reason).await;
        }
        tracing::debug!(close = end.map(|(code, _)| code), "socket closed");
    }

    async fn on_message(&mut self, message: Option<Result<Message, axum::Error>>) -> Flow {
        match message {
            None => Flow::Gone,
            Some(Err(e)) => {
                // Oversized or malformed WebSocket framing: the stream cannot be trusted.
                tracing::debug!(error = %e, "websocket protocol error");
                Flow::Close(close::PROTOCOL, "protocol error")
            }
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(Message::Binary(_))) => {
                self.send_error(None, "binary frames are not supported: send JSON text")
                    .await
            }
            // tungstenite answers pings itself; both only count as liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Flow::Continue,
            // tungstenite queues the close reply; the next recv returns None.
            Some(Ok(Message::Close(_))) => Flow::Continue,
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        match serde_json::from_str::<ClientFrame>(text) {
            Err(e) => {
                let message = format!("invalid frame: {}", truncate(&e.to_string(), MAX_ECHO));
                self.send_error(None, message).await
            }
            // Older SDKs still ping on their timer, and the SDK probes after a wake-up.
            Ok(ClientFrame::Ping) => self.send(&ServerFrame::Pong).await,
            // The answer to our ping: receiving it already moved `last_seen`.
            Ok(ClientFrame::Pong) => Flow::Continue,
            // Boxed: these rare steps (store and Redis calls) would otherwise size the
            // future every idle connection keeps for its whole life.
            Ok(ClientFrame::Logout { seq }) => Box::pin(self.on_logout(seq)).await,
            Ok(ClientFrame::Login(login)) => Box::pin(self.on_login(login)).await,
            Ok(ClientFrame::Resume { seq, ticket }) => Box::pin(self.on_resume(seq, &ticket)).await,
            Ok(ClientFrame::Renew { seq, usersig }) => Box::pin(self.on_renew(seq, usersig)).await,
        }
    }

    /// Counts a checked login, resume or renew frame against the address's rate (`verified`
    /// ones and those the checks refused each have their own budget): false (and counted as
    /// refused) when over it.
    fn login_attempt_allowed(&self, verified: bool) -> bool {
        let ok = self
            .state
            .limits()
            .login_attempt(self.client, Instant::now(), verified);
        if !ok {
            self.state.metrics().refused(Refusal::LoginRate);
            tracing::info!(client = %self.client, "login attempt refused: over the address's rate");
        }
        ok
    }

    /// Counts a verified login, resume or renewal of `user` against its per-user rate:
    /// false (and counted as refused) when over it.
    fn user_attempt_allowed(&self, app: u32, user: &str) -> bool {
        let ok = self.state.limits().user_login(app, user, Instant::now());
        if !ok {
            self.state.metrics().refused(Refusal::UserLoginRate);
            tracing::info!(client = %self.client, user, "login attempt refused: over the user's rate");
        }
        ok
    }

    /// A login (error 70050 first) or resume refused for the address's rate: close 4010.
    async fn refuse_login(&mut self, seq: Option<u32>) -> Flow {
        if let Some(seq) = seq {
            let flow = self
                .send_error_code(
                    Some(seq),
                    ERR_USERSIG_RATE_LIMITED,
                    Refusal::LoginRate.as_str(),
                )
                .await;
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
        Flow::Close(Refusal::LoginRate.close_code(), Refusal::LoginRate.as_str())
    }

    /// A reconnect presenting its ticket: reattach the session, or tell the client it was
    /// kicked while away. Never kicks anyone.
    async fn on_resume(&mut self, seq: u32, ticket: &str) -> Flow {
        let now = unix_now();
        let opened = self.state.apps().open_ticket(ticket);
        if !self.login_attempt_allowed(opened.is_ok()) {
            // No error frame: the client would answer it with a login; it reconnects.
            return self.refuse_login(None).await;
        }
        let (app, claims) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::info!(reason = %e, "resume refused");
                return self
                    .send_error(Some(seq), format!("{e}: log in again"))
                    .await;
            }
        };
        if !self.user_attempt_allowed(app.sdkappid, &claims.user) {
            // As over the address's rate: the client reconnects with backoff.
            return Flow::Close(
                Refusal::UserLoginRate.close_code(),
                Refusal::UserLoginRate.as_str(),
            );
        }
        match self.end_session().await {
            Ok(Some(old)) => {
                tracing::info!(user = %old.user, instance = %old.instance, "logout (resume on the same socket)")
            }
            Ok(None) => {}
            // Not decided: the client reconnects with backoff and tries again.
            Err(_) => return Flow::Close(close::TRY_AGAIN_LATER, "session store unreachable"),
        }
        // A REST kick after this session's UserSig was issued refuses it (checked atomically
        // with the resume, so a concurrent kick cannot slip between).
        let decided = if claims.expire_at <= now {
            Err(ResumeError::Refused(ResumeRefused::Kicked(
                KickReason::UserSigExpired,
            )))
        } else {
            self.state
                .backend()
                .resume(&app, &claims, self.outbox.clone(), Some(self.client))
                .await
        };
        let refused = match decided {
            Ok((info, reported)) => Ok((info, reported)),
            Err(ResumeError::Refused(refused)) => Err(refused),
            Err(ResumeError::Backend(e)) => {
                // Not refused: the client reconnects with backoff and tries again. Said in an
                // error frame first (70169, as a login gets): WebKitGTK's WebSocket (libsoup)
                // fails a connection closed with 1013 as a protocol error, so its pages would
                // never see the code.
                tracing::warn!(user = %claims.user, error = %e, "resume not decided");
                let flow = self
                    .send_error_code(Some(seq), ERR_SERVER_TIMEOUT, UNAVAILABLE)
                    .await;
                if !matches!(flow, Flow::Continue) {
                    return flow;
                }
                return Flow::Close(close::TRY_AGAIN_LATER, "session store unreachable");
            }
        };
        match refused {
            Ok((info, reported)) => {
                tracing::info!(user = %info.user, instance = %info.instance, "resumed");
                self.state.events().resume(&info);
                // Stored by the decision itself (a cluster script), or here before the
                // answer.
                if !reported {
                    self.state
                        .callbacks()
                        .report(&info, Change::Login(&[]), Some(self.client))
                        .await;
                }
                let heartbeat = self.state.config().heartbeat();
                self.session = Some(Session::of(app, info.clone(), heartbeat));
                let frame = ServerFrame::ResumeOk {
                    seq,
                    heartbeat_ms: self.state.config().heartbeat_ms,
                    expire_at: info.expire_at,
                    expires_in: info.expire_at.saturating_sub(now),
                };
                self.send(&frame).await
            }
            Err(ResumeRefused::Ended) => {
                // Logged out, or the ticket outlived its lifetime: a holder with the UserSig
                // logs in again (the SDK does), anyone else is out.
                tracing::info!(user = %claims.user, instance = %claims.instance, "resume refused: session ended");
                self.send_error(
                    Some(seq),
                    "session ticket is no longer valid (its session ended): log in again",
                )
                .await
            }
            Err(refused) => {
                // Replaced: the same instance id logged in anew while this session was away.
                // The newer login holds the slot; the stale one steps aside as a kicked one
                // does (an error would make the client log in again and take the slot back).
                let reason = match refused {
                    ResumeRefused::Kicked(reason) => reason,
                    ResumeRefused::Replaced | ResumeRefused::Ended => KickReason::MultipleAccount,
                };
                tracing::info!(user = %claims.user, instance = %claims.instance, reason = reason.as_str(), ?refused, "resume refused");
                self.send_kicked(reason).await
            }
        }
    }

    /// Sends `kicked{reason}`, then closes with `close::KICKED`.
    async fn send_kicked(&mut self, reason: KickReason) -> Flow {
        match self.send(&ServerFrame::Kicked { reason }).await {
            Flow::Continue => Flow::Close(close::KICKED, "kicked"),
            other => other,
        }
    }

    async fn on_login(&mut self, login: Login) -> Flow {
        let seq = login.seq;
        let app = self.state.app(login.sdkappid).map(|a| a.sdkappid);
        match self.try_login(login).await {
            Ok(ok) => {
                self.state.metrics().login(app, 0);
                self.send(&ServerFrame::LoginOk(ok)).await
            }
            Err((user, e)) => {
                // Any login frame on a logged-in socket ends its session, even one refused
                // before the old session was ended (a bad UserSig, over a rate).
                if self.session.is_some() {
                    let _ = self.end_session().await;
                }
                let over_address_rate = matches!(e, LoginError::AddressRateLimited)
                    || (e.refused_by_checks() && !self.login_attempt_allowed(false));
                if over_address_rate {
                    return self.refuse_login(Some(seq)).await;
                }
                self.count_guess(&e);
                let code = e.code();
                self.state.metrics().login(app, code);
                match &e {
                    LoginError::Store(err) => {
                        tracing::error!(user = %user, code, error = %err, "login failed: store")
                    }
                    LoginError::Unavailable => {
                        tracing::warn!(user = %user, code, "login failed: Redis unreachable")
                    }
                    _ => tracing::info!(user = %user, code, reason = %e, "login failed"),
                }
                self.send_error_code(Some(seq), code, e.to_string()).await
            }
        }
    }

    /// Counts a bad signature (a guessed UserSig) in the metrics.
    fn count_guess(&self, e: &LoginError) {
        match e {
            LoginError::UserSig(tim_usersig::UserSigError::BadSignature) => {
                self.state.metrics().bad_signature(false)
            }
            LoginError::RateLimited => self.state.metrics().bad_signature(true),
            _ => {}
        }
    }

    /// Checks, registers and records a login. On failure returns the (log-safe) user
    /// for logging with the error.
    async fn try_login(&mut self, login: Login) -> Result<LoginOk, (String, LoginError)> {
        // Formatted only on failure: a successful login logs the checked UserID as it is.
        let log_user = |user: &str| truncate(user, 40).escape_debug().to_string();
        let app = self.state.app(login.sdkappid).cloned().ok_or_else(|| {
            (
                log_user(&login.user),
                LoginError::SdkAppIdNotFound(login.sdkappid),
            )
        })?;
        let claims = app
            .checker()
            .check(&login, unix_now(), self.client)
            .map_err(|e| (log_user(&login.user), e))?;
        if !self.login_attempt_allowed(true) {
            return Err((log_user(&login.user), LoginError::AddressRateLimited));
        }
        if !self.user_attempt_allowed(app.sdkappid, &login.user) {
            return Err((log_user(&login.user), LoginError::UserRateLimited));
        }
        // A login on a logged-in socket replaces its session: end the old one first (not
        // acknowledged, nor the new login, unless that end is durable).
        match self.end_session().await {
            Ok(Some(old)) => {
                tracing::info!(user = %old.user, instance = %old.instance, "logout (re-login on the same socket)")
            }
            Ok(None) => {}
            Err(BackendError::Store(e)) => {
                return Err((log_user(&login.user), LoginError::Store(e)))
            }
            Err(BackendError::Unavailable(_)) => {
                return Err((log_user(&login.user), LoginError::Unavailable))
            }
        }
        let expire_at = expiry(&claims);
        let session = NewSession {
            app: app.sdkappid,
            user: login.user.clone(),
            instance: login.instance.clone(),
            platform: login.platform,
            expire_at,
            sig_time: claims.time,
            outbox: self.outbox.clone(),
            client: Some(self.client),
        };
        let admitted = match self.state.backend().login(&app, session).await {
            Ok(LoginDecision::Admitted(admission)) => Ok(admission),
            Ok(LoginDecision::Revoked) => Err(LoginError::Revoked),
            Err(BackendError::Store(e)) => Err(LoginError::Store(e)),
            Err(e @ BackendError::Unavailable(_)) => {
                tracing::warn!(error = %e, "login not decided");
                Err(LoginError::Unavailable)
            }
        };
        let crate::backend::Admission {
            info,
            kicked,
            kicked_platforms,
            new_account,
            reported,
        } = admitted.map_err(|e| (log_user(&login.user), e))?;
        let now = unix_now();
        let ticket = self.ticket_for(&app, &info, now);
        tracing::info!(
            user = %login.user,
            instance = %login.instance,
            platform = login.platform.as_str(),
            new_account,
            kicked,
            "login ok"
        );
        self.state.events().login(&info, kicked);
        // Stored with the decision (a cluster script: `reported`) or here, before the client
        // hears `login_ok`; the kicked instances get no event of their own (their platforms
        // are this one's KickedDevice).
        if !reported {
            self.state
                .callbacks()
                .report(&info, Change::Login(&kicked_platforms), Some(self.client))
                .await;
        }
        let config = self.state.config();
        self.session = Some(Session::of(app, info, config.heartbeat()));
        Ok(LoginOk {
            seq: login.seq,
            ticket,
            heartbeat_ms: config.heartbeat_ms,
            expire_at,
            expires_in: expire_at.saturating_sub(now),
        })
    }

    /// The ticket a client presents to resume `info`'s session, signed for its app.
    fn ticket_for(&self, app: &App, info: &InstanceInfo, now: u64) -> String {
        let lifetime = self.state.config().ticket_lifetime_secs;
        let valid_until = info.expire_at.min(now.saturating_add(lifetime));
        app.tickets().issue(&info.ticket_claims(valid_until))
    }

    /// A fresh UserSig for this socket's session: checked like a login's (same user), then
    /// the session runs until its expiry, under a new ticket.
    async fn on_renew(&mut self, seq: u32, usersig: String) -> Flow {
        let Some(session) = &self.session else {
            return self.send_error(Some(seq), "not logged in").await;
        };
        let app = Arc::clone(&session.app);
        let login = Login {
            seq,
            sdkappid: app.sdkappid,
            user: session.info.user.clone(),
            usersig,
            platform: session.info.platform,
            instance: session.info.instance.clone(),
        };
        let now = unix_now();
        let checked = app.checker().check(&login, now, self.client);
        if !self.login_attempt_allowed(checked.is_ok()) {
            // The session stays; the client retries its renewal later.
            return self
                .send_error_code(
                    Some(seq),
                    ERR_USERSIG_RATE_LIMITED,
                    Refusal::LoginRate.as_str(),
                )
                .await;
        }
        let claims = match checked {
            Ok(claims) => claims,
            Err(e) => {
                self.count_guess(&e);
                tracing::info!(user = %login.user, code = e.code(), reason = %e, "renewal refused");
                return self
                    .send_error_code(Some(seq), e.code(), e.to_string())
                    .await;
            }
        };
        if !self.user_attempt_allowed(app.sdkappid, &login.user) {
            let e = LoginError::UserRateLimited;
            return self
                .send_error_code(Some(seq), e.code(), e.to_string())
                .await;
        }
        let expire_at = expiry(&claims);
        let renewed = self
            .state
            .backend()
            .renew(&session.info, expire_at, claims.time)
            .await;
        let info = match renewed {
            Ok(Renewal::Renewed(info)) => info,
            // Kicked meanwhile: the kick command is on its way to this socket.
            Ok(Renewal::Gone) => return Flow::Continue,
            Ok(Renewal::Revoked) => {
                let e = LoginError::Revoked;
                tracing::info!(user = %login.user, code = e.code(), reason = %e, "renewal refused");
                return self
                    .send_error_code(Some(seq), e.code(), e.to_string())
                    .await;
            }
            Err(e) => {
                // The session goes on with its UserSig; the SDK retries the renewal.
                tracing::warn!(user = %login.user, error = %e, "renewal not recorded");
                let e = LoginError::Unavailable;
                return self
                    .send_error_code(Some(seq), e.code(), e.to_string())
                    .await;
            }
        };
        tracing::info!(user = %info.user, instance = %info.instance, "usersig renewed");
        let ticket = self.ticket_for(&app, &info, now);
        self.session = Some(Session::of(app, info, self.state.config().heartbeat()));
        let frame = ServerFrame::RenewOk {
            seq,
            ticket,
            expire_at,
            expires_in: expire_at.saturating_sub(now),
        };
        self.send(&frame).await
    }

    async fn on_logout(&mut self, seq: u32) -> Flow {
        match self.end_session().await {
            Ok(Some(old)) => {
                tracing::info!(user = %old.user, instance = %old.instance, "logout");
                self.send(&ServerFrame::LogoutOk { seq }).await
            }
            Ok(None) => {
                self.send_error_code(Some(seq), ERR_INVALID_PARAMETERS, "not logged in")
                    .await
            }
            Err(e) => self.end_not_durable(seq, &e).await,
        }
    }

    /// Ends this socket's session (logout or re-login) and restarts the login deadline.
    /// The backend makes the end durable before it returns, so the session's tickets stay
    /// dead across a restart. An error: the end is not durable yet (the session is gone
    /// here all the same; in cluster mode the node writes the end once Redis answers), and
    /// the request that ended it is answered with an error, never acknowledged.
    async fn end_session(&mut self) -> Result<Option<InstanceInfo>, BackendError> {
        let Some(old) = self.session.take() else {
            return Ok(None);
        };
        self.login_deadline = Instant::now() + self.state.config().login_timeout();
        // The Logout event goes with the end (embedded: one store transaction; cluster: the
        // script), or is stored here when the decision did not.
        let event = self
            .state
            .callbacks()
            .prepare(&old.info, Change::Logout, Some(self.client));
        let (ours, reported) = match self
            .state
            .backend()
            .logout(&old.info, Some(self.client), event)
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(user = %old.info.user, error = %e, "logout not recorded");
                return Err(e);
            }
        };
        self.state.events().logout(&old.info);
        match reported {
            Some(dropped) => self.state.callbacks().stored(old.info.app, Ok(dropped)),
            // Not ours: the session had ended otherwise meanwhile (kicked, its kick on its
            // way here), and whoever ended it reported it (a login's KickedDevice, a REST
            // kick's or ApplyNow's own event): nothing more, or it would be reported twice.
            None if !ours => {}
            None => {
                self.state
                    .callbacks()
                    .report(&old.info, Change::Logout, Some(self.client))
                    .await
            }
        }
        Ok(Some(old.info))
    }

    /// Answers request `seq` whose session's end could not be made durable.
    async fn end_not_durable(&mut self, seq: u32, e: &BackendError) -> Flow {
        let code = match e {
            BackendError::Unavailable(_) => ERR_SERVER_TIMEOUT,
            BackendError::Store(_) => ERR_INTERNAL,
        };
        self.send_error_code(
            Some(seq),
            code,
            "logout not recorded: session store unreachable (the server records it as soon \
             as it can; retry later)",
        )
        .await
    }

    /// The socket is going away without a logout: the instance keeps its slot for the
    /// resume grace period, so a reconnect with its ticket resumes without kicking anyone.
    async fn socket_closed(&mut self) {
        if let Some(old) = self.session.take() {
            let (why, change) = if self.timed_out {
                (Disconnect::TimeOut, Change::TimeOut)
            } else {
                (Disconnect::LinkClose, Change::LinkClose)
            };
            // Stored before the slot is marked away: a resume (which needs it away) is
            // always reported after this disconnect.
            self.state
                .callbacks()
                .report(&old.info, change, Some(self.client))
                .await;
            let until = std::time::Instant::now() + self.state.config().resume_grace();
            self.state.backend().detach(&old.info, until);
            self.state.events().disconnect(&old.info, why);
        }
    }

    async fn on_command(&mut self, command: SocketCommand) -> Flow {
        let current = self.session.as_ref().map(|s| s.info.session);
        match command {
            SocketCommand::Kick {
                session,
                reason,
                reported,
            } if Some(session) == current => {
                // The registry already removed the entry.
                self.state.metrics().kicked(reason);
                if let Some(Session { info: s, .. }) = self.session.take() {
                    tracing::info!(
                        user = %s.user,
                        instance = %s.instance,
                        platform = s.platform.as_str(),
                        reason = reason.as_str(),
                        "kicked"
                    );
                    self.state.events().kicked(&s, reason);
                    // A login's kicks are its KickedDevice; the others end the session.
                    let change = match reason {
                        KickReason::RestApi => Some(Change::RestKick),
                        KickReason::UserSigExpired => Some(Change::Expired),
                        KickReason::MultipleAccount | KickReason::MultipleDevice => None,
                    };
                    if let (Some(change), false) = (change, reported) {
                        self.state
                            .callbacks()
                            .report(&s, change, Some(self.client))
                            .await;
                    }
                }
                self.send_kicked(reason).await
            }
            SocketCommand::Superseded { session } if Some(session) == current => {
                self.session = None;
                Flow::Close(
                    close::SUPERSEDED,
                    "instance logged in on another connection",
                )
            }
            SocketCommand::Lost { session } if Some(session) == current => {
                self.session = None;
                Flow::Close(
                    close::SERVICE_RESTART,
                    "node lost its hold on the session; resume",
                )
            }
            // For a session this socket already ended (e.g. re-logged-in meanwhile).
            _ => Flow::Continue,
        }
    }

    /// The session's UserSig expired: ends it and tells the client (`kicked`).
    async fn usersig_expired(&mut self) -> Flow {
        // The registry drops the slot and leaves the tombstone (by session, not
        // instance id: the same instance may be on a newer socket by now); this socket
        // ends itself rather than wait for the registry's command, which it would never
        // get if the registry no longer knew the session (the timer would spin).
        let s = self.session.take().expect("on_timeout found one").info;
        tracing::debug!(user = %s.user, instance = %s.instance, "usersig expired");
        self.state.metrics().kicked(KickReason::UserSigExpired);
        let reported = match Box::pin(self.state.backend().expire(&s, Some(self.client))).await {
            Ok(reported) => reported,
            Err(e) => {
                tracing::warn!(user = %s.user, error = %e, "expiry not recorded");
                false
            }
        };
        self.state.events().kicked(&s, KickReason::UserSigExpired);
        if !reported {
            self.state
                .callbacks()
                .report(&s, Change::Expired, Some(self.client))
                .await;
        }
        self.send_kicked(KickReason::UserSigExpired).await
    }

    async fn on_timeout(&mut self) -> Flow {
        if self
            .session
            .as_ref()
            .is_some_and(|s| Instant::now() >= s.expires)
        {
            // Boxed: rare, and its callback report would size every socket's future.
            return Box::pin(self.usersig_expired()).await;
        }
        let (now, idle) = (Instant::now(), self.idle_deadline());
        if let Some(s) = self.session.as_mut() {
            if now < idle {
                // The heartbeat: the client answers `pong` from its message handler, which
                // browsers run at once even in a hidden tab whose timers they throttle.
                s.ping_at = now + self.state.config().heartbeat();
                return self.send(&ServerFrame::Ping).await;
            }
            tracing::debug!("heartbeat timeout");
            self.timed_out = true;
            Flow::Close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout")
        } else {
            tracing::debug!("login timeout");
            match self.send_error(None, "login timeout").await {
                Flow::Continue => Flow::Close(close::LOGIN_TIMEOUT, "login timeout"),
                other => other,
            }
        }
    }

    async fn send(&mut self, frame: &ServerFrame) -> Flow {
        let text = match serde_json::to_string(frame) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a frame");
                return Flow::Close(close::PROTOCOL, "internal error");
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text.into()))).await
        {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "send failed");
                Flow::Gone
            }
            Err(_) => {
                tracing::debug!("send timed out: peer not reading");
                Flow::Gone
            }
        }
    }

    /// An `error` frame with code 70402 (invalid parameters).
    async fn send_error(&mut self, seq: Option<u32>, message: impl Into<String>) -> Flow {
        self.send_error_code(seq, ERR_INVALID_PARAMETERS, message)
            .await
    }

    async fn send_error_code(
        &mut self,
        seq: Option<u32>,
        code: u32,
        message: impl Into<String>,
    ) -> Flow {
        let frame = ServerFrame::Error(ErrorFrame {
            seq,
            code,
            message: message.into(),
        });
        self.send(&frame).await
    }

    /// Sends a close frame, then waits (bounded) for the peer's close.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let sent =
            tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Close(Some(frame)))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let drain = async {
            // Errors are expected here (e.g. the rest of an oversized frame); a few in a row
            // mean the stream is broken.
            let mut errors = 0;
            while let Some(message) = self.socket.recv().await {
                match message {
                    Ok(Message::Close(_)) => break,
                    Ok(_) => {}
                    Err(_) if errors < 3 => errors += 1,
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
    }
}

/// When a UserSig expires, unix seconds, capped at 2^53 - 1 so that clients parsing JSON
/// numbers as doubles (browsers) read it exactly ("never expires" UserSigs exist).
fn expiry(claims: &tim_usersig::UserSigClaims) -> u64 {
    claims.time.saturating_add(claims.expire).min((1 << 53) - 1)
}

/// At most `max` bytes of `s`, cut on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
