//! The native driver of the session core ([`tim_session::Session`]) over tokio and
//! tokio-tungstenite: one task per [`Client`] owns the socket and the session, executes what
//! the session asks ([`Io`]), feeds it what happens (frames, closes, the clock) and hands
//! the events out. Tests use it to play any platform (Web, Android, iPhone, iPad, Windows,
//! Mac) against a real `timd`; the benchmarks use it as the load; `timd client` is a CLI
//! over it ([`cli`]).
//!
//! Every call settles: it resolves with the session's outcome, or rejects with
//! [`SDK_UNCAUGHT_ERROR`] (2903) when the driver task is gone. Dropping the last handle
//! destroys the session (logout, socket closed) and ends the task.
//!
//! ```no_run
//! # async fn demo() {
//! use tim_client::{Client, Config, Platform};
//! let config = Config::new(1_400_000_000, Platform::Android, tim_client::random_instance_id());
//! let mut client = Client::new("ws://127.0.0.1:9000", config);
//! client.login("alice", "usersig").await.unwrap();
//! while let Some(event) = client.next_event().await {
//!     println!("{}", tim_client::describe(&event));
//! }
//! # }
//! ```

pub mod cli;

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tim_proto::{ClientFrame, ServerFrame, SDK_UNCAUGHT_ERROR};
use tim_session::{Io, OpId, Session};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub use tim_proto::{KickReason, NetState, Platform};
pub use tim_session::{Config, Event, OpOk, SdkError};

/// The outcome of `login` / `logout` / `destroy`.
pub type OpResult = Result<OpOk, SdkError>;

type Ws = WebSocketStream<TcpStream>;
type Connecting = Pin<Box<dyn Future<Output = Result<Box<Ws>, String>> + Send>>;

/// How long a graceful close (ours) waits for the server's close before dropping the TCP
/// connection.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// A frame the server does not take within this means the connection is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-socket read buffer: frames are tiny, and tungstenite's 128 KiB default would dominate
/// the memory of a load run with thousands of clients.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Where `timd` listens, from a `ws://host:port[/base]` (or `http://`) URL; the socket goes
/// to `<base>/ws`, as the browser SDK's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, as given (resolved at each connect).
    pub authority: String,
    /// The full WebSocket URL, `ws://host:port/…/ws`.
    pub url: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        let rest = if let Some(r) = url.strip_prefix("ws://") {
            r
        } else if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("wss://") || url.starts_with("https://") {
            return Err(format!(
                "{url}: TLS is not supported by the native client; use ws://"
            ));
        } else {
            return Err(format!("{url}: expected ws://host:port"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let base = path.trim_end_matches('/');
        Ok(Endpoint {
            url: format!("ws://{authority}{base}/ws"),
            authority,
        })
    }
}

/// Supplies a fresh UserSig ahead of expiry (`getUserSig` of `TIM.create`); `None` when it
/// cannot (the session retries, then ends with `userSigExpired` at expiry).
pub type RenewFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync>;

/// Knobs beyond the session [`Config`].
#[derive(Clone, Default)]
pub struct Options {
    /// Renew the UserSig without dropping the session (sets `config.renew`).
    pub renew: Option<RenewFn>,
    /// Seeds the reconnect jitter; `None` (the default) takes real randomness.
    pub seed: Option<u64>,
    /// Local address to connect from (load runs spread sockets over 127.0.0.x).
    pub bind: Option<IpAddr>,
    /// A TCP connect + WebSocket handshake taking longer than this fails (as a closed
    /// socket). Default: the session's login timeout.
    pub connect_timeout: Option<Duration>,
}

/// Where the session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Logged in (`SDK_READY` seen, no `SDK_NOT_READY` / `KICKED_OUT` since).
    pub ready: bool,
    /// Logged in with the connection up.
    pub connected: bool,
    /// The logged-in UserID, or `""`.
    pub user: String,
    /// The kick that ended the session, until the next login.
    pub kicked: Option<KickReason>,
    pub destroyed: bool,
}

enum Command {
    Login {
        user: String,
        usersig: String,
        reply: oneshot::Sender<OpResult>,
    },
    Logout(oneshot::Sender<OpResult>),
    Destroy(oneshot::Sender<OpResult>),
    Status(oneshot::Sender<Status>),
    /// Drop the TCP connection as a network failure would (no close frame).
    DropConnection,
    /// The network is gone: drop the connection, stop retrying until [`Command::Online`].
    Offline,
    Online,
    Wake,
    /// A `ping` on the current socket; the sender learns when its `pong` is handled.
    RoundTrip(oneshot::Sender<bool>),
}

/// What the task and the handles share.
struct Shared {
    base: Instant,
    /// When the last `login` frame went out: nanoseconds since `base`, plus one (0: never).
    login_sent: AtomicU64,
}

/// The command side of a client; cheap to clone. The task ends (destroying the session)
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    instance: Arc<str>,
    platform: Platform,
}

/// The event side of a client: `SDK_READY`, `SDK_NOT_READY`, `KICKED_OUT`,
/// `NET_STATE_CHANGE`, `ERROR` (never [`Event::Done`]: outcomes settle the calls).
pub struct Events {
    rx: mpsc::UnboundedReceiver<(Instant, Event)>,
}

/// A native SDK instance: a [`Handle`] and its [`Events`].
pub struct Client {
    handle: Handle,
    events: Events,
}

impl Client {
    /// Creates the instance and spawns its driver task (needs a tokio runtime). No network
    /// use until `login`. `config.seed` is replaced by real randomness.
    pub fn new(url: &str, config: Config) -> Client {
        Client::with_options(url, config, Options::default())
    }

    pub fn with_options(url: &str, mut config: Config, options: Options) -> Client {
        config.seed = options.seed.unwrap_or_else(random_u64);
        config.renew = options.renew.is_some();
        let shared = Arc::new(Shared {
            base: Instant::now(),
            login_sent: AtomicU64::new(0),
        });
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (renewed_tx, renewed_rx) = mpsc::unbounded_channel();
        let handle = Handle {
            commands,
            shared: shared.clone(),
            instance: config.instance.as_str().into(),
            platform: config.platform,
        };
        let connect_timeout = options
            .connect_timeout
            .unwrap_or(Duration::from_millis(config.login_timeout_ms));
        let driver = Driver {
            session: Session::new(config),
            endpoint: Endpoint::parse(url),
            bind: options.bind,
            connect_timeout,
            shared,
            socket: None,
            connecting: None,
            close_code: None,
            pending: Vec::new(),
            events: events_tx,
            renew: options.renew,
            renewed: renewed_tx,
            pings: 0,
            pongs: 0,
            rounds: Vec::new(),
            settled: Vec::new(),
        };
        tokio::spawn(driver.run(commands_rx, renewed_rx));
        Client {
            handle,
            events: Events { rx: events_rx },
        }
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub fn split(self) -> (Handle, Events) {
        (self.handle, self.events)
    }

    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.next().await
    }

    pub async fn next_event_at(&mut self) -> Option<(Instant, Event)> {
        self.events.next_at().await
    }

    pub fn try_next_event(&mut self) -> Option<Event> {
        self.events.try_next()
    }

    pub fn try_next_event_at(&mut self) -> Option<(Instant, Event)> {
        self.events.try_next_at()
    }

    /// Waits for an event matching `pred`, skipping others, for at most `within`.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        pred: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        self.events.wait_for(within, pred).await
    }
}

impl std::ops::Deref for Client {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Handle {
    /// `tim.login({ userID, userSig })`.
    pub async fn login(&self, user: &str, usersig: &str) -> OpResult {
        let (reply, rx) = oneshot::channel();
        self.call(
            Command::Login {
                user: user.to_owned(),
                usersig: usersig.to_owned(),
                reply,
            },
            rx,
        )
        .await
    }

    /// `tim.logout()`.
    pub async fn logout(&self) -> OpResult {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Logout(reply), rx).await
    }

    /// `tim.destroy()`: logout, close the socket; afterwards every call fails with 2905.
    pub async fn destroy(&self) -> OpResult {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Destroy(reply), rx).await
    }

    /// A snapshot of the session's state; `None` when the task is gone.
    pub async fn status(&self) -> Option<Status> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Status(reply)).ok()?;
        rx.await.ok()
    }

    /// Drops the TCP connection without a close frame, as a network failure would: the
    /// session reconnects (with backoff) and resumes.
    pub fn drop_connection(&self) {
        let _ = self.commands.send(Command::DropConnection);
    }

    /// The network is gone (the browser's `offline`): the connection is dropped and no
    /// reconnect is tried until [`Handle::online`].
    pub fn offline(&self) {
        let _ = self.commands.send(Command::Offline);
    }

    /// The network is back (the browser's `online`): reconnect now.
    pub fn online(&self) {
        let _ = self.commands.send(Command::Online);
    }

    /// The machine woke up / the tab became visible: reconnect now, or probe the
    /// connection (nothing while offline).
    pub fn wake(&self) {
        let _ = self.commands.send(Command::Wake);
    }

    /// A round trip with the server on the current connection: sends a `ping` and returns
    /// `true` once its `pong` has been handled, and so every frame the server sent before
    /// it, with the events they caused queued ([`Client::try_next_event`]). `false` without
    /// an open connection, or when it is lost before the `pong`. Tests use it as a barrier
    /// to show that something did *not* happen; the session sees an extra `pong`, which it
    /// ignores.
    pub async fn round_trip(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::RoundTrip(reply)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// When this client last wrote a `login` frame (kick-latency measurements start there).
    pub fn last_login_sent(&self) -> Option<Instant> {
        match self.shared.login_sent.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.shared.base + Duration::from_nanos(n - 1)),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn platform(&self) -> Platform {
        self.platform
    }

    async fn call(&self, command: Command, rx: oneshot::Receiver<OpResult>) -> OpResult {
        if self.commands.send(command).is_err() {
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}

impl Events {
    /// The next event; `None` once the driver task has ended and every event was taken.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await.map(|(_, e)| e)
    }

    /// The next event with the moment the session emitted it.
    pub async fn next_at(&mut self) -> Option<(Instant, Event)> {
        self.rx.recv().await
    }

    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok().map(|(_, e)| e)
    }

    /// An event already queued, with the moment the session emitted it.
    pub fn try_next_at(&mut self) -> Option<(Instant, Event)> {
        self.rx.try_recv().ok()
    }

    /// Waits for an event matching `pred`, skipping others, for at most `within`.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        tokio::time::timeout(within, async {
            while let Some(e) = self.next().await {
                if pred(&e) {
                    return Some(e);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}

fn gone() -> SdkError {
    SdkError::new(
        SDK_UNCAUGHT_ERROR,
        "the client's driver task is gone; the call cannot complete",
    )
}

/// One line for an event, as `timd client` prints it: `event kickedOut multipleDevice`,
/// `event netStateChange connecting`, `event error 70001 …`.
pub fn describe(event: &Event) -> String {
    use tim_proto::*;
    match event {
        Event::Ready => format!("event {EVENT_SDK_READY}"),
        Event::NotReady => format!("event {EVENT_SDK_NOT_READY}"),
        Event::Kicked(reason) => format!("event {EVENT_KICKED_OUT} {}", reason.as_str()),
        Event::NetState(state) => format!("event {EVENT_NET_STATE_CHANGE} {}", state.as_str()),
        Event::Error(e) => format!("event {EVENT_ERROR} {} {}", e.code, e.message),
        Event::Destroyed => format!("event {EVENT_SDK_DESTROY}"),
        Event::RenewUserSig => "renew".to_string(),
        Event::Done { op, result } => format!("done {op} {result:?}"),
    }
}

/// 64 bits of OS-seeded randomness (std's `RandomState` keys), without a dependency.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A fresh instance id: 16 hex digits.
pub fn random_instance_id() -> String {
    format!("{:016x}", random_u64())
}

/// The task that owns the session and its socket.
struct Driver {
    session: Session,
    endpoint: Result<Endpoint, String>,
    bind: Option<IpAddr>,
    connect_timeout: Duration,
    shared: Arc<Shared>,
    socket: Option<Ws>,
    connecting: Option<Connecting>,
    /// The close code the server sent on the current socket, if any.
    close_code: Option<u16>,
    pending: Vec<(OpId, oneshot::Sender<OpResult>)>,
    events: mpsc::UnboundedSender<(Instant, Event)>,
    renew: Option<RenewFn>,
    /// Where renewals report their fresh UserSig (or none).
    renewed: mpsc::UnboundedSender<Option<String>>,
    /// The `ping`s sent on the current socket, the session's and the round trips', and the
    /// `pong`s received on it: the server answers them in order.
    pings: u64,
    pongs: u64,
    /// Round trips waiting for the `pong` that answers their `ping` (its number).
    rounds: Vec<(u64, oneshot::Sender<bool>)>,
    /// Round trips settled, answered once the events before them are handed out.
    settled: Vec<(oneshot::Sender<bool>, bool)>,
}

/// What woke the driver.
enum Wake {
    Command(Option<Command>),
    Connected(Result<Box<Ws>, String>),
    Message(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Renewed(Option<String>),
    Timer,
}

impl Driver {
    fn now(&self) -> u64 {
        self.shared.base.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut renewed: mpsc::UnboundedReceiver<Option<String>>,
    ) {
        loop {
            self.pump().await;
            // Round trips settle once the events of the frames before them are handed out.
            if self.socket.is_none() {
                self.socket_gone();
            }
            for (reply, answered) in self.settled.drain(..) {
                let _ = reply.send(answered);
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(|t| self.shared.base + Duration::from_millis(t));
            let wake = tokio::select! {
                c = commands.recv() => Wake::Command(c),
                r = connect_done(&mut self.connecting) => Wake::Connected(r),
                m = next_message(&mut self.socket) => Wake::Message(m),
                Some(r) = renewed.recv() => Wake::Renewed(r),
                () = sleep_until(deadline) => Wake::Timer,
            };
            let now = self.now();
            match wake {
                Wake::Command(Some(Command::RoundTrip(reply))) => {
                    self.start_round_trip(reply).await
                }
                Wake::Command(Some(command)) => self.on_command(now, command),
                Wake::Command(None) => {
                    // Every handle is gone: destroy (logout + close) and end.
                    self.session.destroy(now);
                    self.pump().await;
                    self.close_socket();
                    return;
                }
                Wake::Connected(result) => {
                    self.connecting = None;
                    match result {
                        Ok(ws) => {
                            self.socket_gone();
                            self.socket = Some(*ws);
                            self.close_code = None;
                            self.session.handle_open(now);
                        }
                        Err(_) => self.session.handle_close(now, 1006),
                    }
                }
                Wake::Message(message) => self.on_message(now, message),
                Wake::Renewed(Some(usersig)) => self.session.renew(now, &usersig),
                Wake::Renewed(None) => self.session.renew_failed(now),
                Wake::Timer => self.session.handle_timeout(now),
            }
        }
    }

    fn on_command(&mut self, now: u64, command: Command) {
        match command {
            Command::Login {
                user,
                usersig,
                reply,
            } => {
                let op = self.session.login(now, &user, &usersig);
                self.pending.push((op, reply));
            }
            Command::Logout(reply) => {
                let op = self.session.logout(now);
                self.pending.push((op, reply));
            }
            Command::Destroy(reply) => {
                let op = self.session.destroy(now);
                self.pending.push((op, reply));
            }
            Command::Status(reply) => {
                let _ = reply.send(Status {
                    ready: self.session.is_ready(),
                    connected: self.session.is_connected(),
                    user: self.session.login_user().to_owned(),
                    kicked: self.session.kicked(),
                    destroyed: self.session.is_destroyed(),
                });
            }
            Command::DropConnection => {
                if self.socket.is_some() || self.connecting.is_some() {
                    self.socket = None;
                    self.connecting = None;
                    self.session.handle_close(now, 1006);
                }
            }
            Command::Offline => {
                if self.session.is_ready() {
                    self.socket = None;
                    self.connecting = None;
                }
                self.session.handle_offline(now);
            }
            Command::Online => self.session.handle_online(now),
            Command::Wake => self.session.handle_wake(now),
            // The loop sends these itself (`start_round_trip` writes to the socket).
            Command::RoundTrip(reply) => self.settled.push((reply, false)),
        }
    }

    /// Sends a `ping` for a round trip; without a socket (or if the send fails) the round
    /// trip fails.
    async fn start_round_trip(&mut self, reply: oneshot::Sender<bool>) {
        if self.socket.is_some() && self.send_frame(&ClientFrame::Ping).await {
            self.rounds.push((self.pings, reply));
        } else {
            self.settled.push((reply, false));
        }
    }

    /// The current socket is gone (or replaced): its round trips cannot be answered.
    fn socket_gone(&mut self) {
        self.pings = 0;
        self.pongs = 0;
        for (_, reply) in self.rounds.drain(..) {
            self.settled.push((reply, false));
        }
    }

    fn on_message(
        &mut self,
        now: u64,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) {
        match message {
            Some(Ok(Message::Text(text))) => {
                // A newer server may send frames this client does not know: ignore them.
                if let Ok(frame) = serde_json::from_str::<ServerFrame>(text.as_str()) {
                    let pong = frame == ServerFrame::Pong;
                    self.session.handle_frame(now, frame);
                    if pong {
                        self.pongs += 1;
                        let pongs = self.pongs;
                        for i in (0..self.rounds.len()).rev() {
                            if self.rounds[i].0 <= pongs {
                                let (_, reply) = self.rounds.swap_remove(i);
                                self.settled.push((reply, true));
                            }
                        }
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => {
                // tungstenite answers the close itself; the stream ends right after.
                self.close_code = Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                self.socket = None;
                let code = self.close_code.take().unwrap_or(1006);
                self.session.handle_close(now, code);
            }
        }
    }

    /// Executes what the session asks for and hands out its events until it is quiet.
    async fn pump(&mut self) {
        loop {
            if let Some(io) = self.session.poll_io() {
                self.execute(io).await;
                continue;
            }
            match self.session.poll_event() {
                Some(Event::RenewUserSig) => match &self.renew {
                    Some(renew) => {
                        let (fresh, tx) = (renew(), self.renewed.clone());
                        tokio::spawn(async move {
                            let _ = tx.send(fresh.await);
                        });
                    }
                    None => {
                        let now = self.now();
                        self.session.renew_failed(now);
                    }
                },
                Some(Event::Done { op, result }) => {
                    if let Some(i) = self.pending.iter().position(|(o, _)| *o == op) {
                        let _ = self.pending.swap_remove(i).1.send(result);
                    }
                }
                Some(event) => {
                    let _ = self.events.send((Instant::now(), event));
                }
                None => break,
            }
        }
    }

    async fn execute(&mut self, io: Io) {
        match io {
            Io::Connect => {
                self.socket = None;
                self.connecting = Some(Box::pin(connect(
                    self.endpoint.clone(),
                    self.bind,
                    self.connect_timeout,
                )));
            }
            Io::Send(frame) => {
                self.send_frame(&frame).await;
            }
            Io::Close => self.close_socket(),
        }
    }

    /// Writes `frame` on the current socket (counting `ping`s); whether it went out. A
    /// socket that does not take it is lost.
    async fn send_frame(&mut self, frame: &ClientFrame) -> bool {
        let Some(ws) = self.socket.as_mut() else {
            return false;
        };
        let Ok(text) = serde_json::to_string(frame) else {
            return false;
        };
        if matches!(frame, ClientFrame::Login(_)) {
            let at = self.shared.base.elapsed().as_nanos() as u64 + 1;
            self.shared.login_sent.store(at, Ordering::Release);
        }
        let sent = tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Text(text.into()))).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.socket = None;
            let now = self.now();
            self.session.handle_close(now, 1006);
            return false;
        }
        if *frame == ClientFrame::Ping {
            self.pings += 1;
        }
        true
    }

    /// Closes the current socket gracefully in the background (bounded), so the server sees
    /// a clean close; the session expects nothing more from it.
    fn close_socket(&mut self) {
        self.connecting = None;
        if let Some(mut ws) = self.socket.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            });
        }
    }
}

async fn connect(
    endpoint: Result<Endpoint, String>,
    bind: Option<IpAddr>,
    limit: Duration,
) -> Result<Box<Ws>, String> {
    let endpoint = endpoint?;
    let attempt = async {
        let addr: SocketAddr = tokio::net::lookup_host(&endpoint.authority)
            .await
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("{}: no address", endpoint.authority))?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| e.to_string())?;
        if let Some(ip) = bind {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| e.to_string())?;
        }
        let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            endpoint.url.as_str(),
            stream,
            Some(config),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Box::new(ws))
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| Err("connect timed out".into()))
}

async fn connect_done(connecting: &mut Option<Connecting>) -> Result<Box<Ws>, String> {
    match connecting {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn next_message(
    socket: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match socket {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("ws://127.0.0.1:9000").unwrap();
        assert_eq!(e.url, "ws://127.0.0.1:9000/ws");
        assert_eq!(e.authority, "127.0.0.1:9000");
        assert_eq!(
            Endpoint::parse("http://h:1/base/").unwrap().url,
            "ws://h:1/base/ws"
        );
        assert_eq!(
            Endpoint::parse("ws://localhost").unwrap().authority,
            "localhost:80"
        );
        assert!(Endpoint::parse("wss://h:1").is_err());
        assert!(Endpoint::parse("h:1").is_err());
        assert!(Endpoint::parse("ws://").is_err());
    }

    #[test]
    fn describe_matches_the_js_names() {
        assert_eq!(
            describe(&Event::Kicked(KickReason::MultipleDevice)),
            "event kickedOut multipleDevice"
        );
        assert_eq!(
            describe(&Event::NetState(NetState::Connecting)),
            "event netStateChange connecting"
        );
        assert_eq!(describe(&Event::Ready), "event sdkStateReady");
    }

    #[test]
    fn seeds_and_ids_differ() {
        assert_ne!(random_u64(), random_u64());
        let id = random_instance_id();
        assert_eq!(id.len(), 16);
        assert_ne!(id, random_instance_id());
    }

    #[tokio::test]
    async fn calls_settle_when_the_server_is_unreachable() {
        // A port nobody listens on: the login rejects with NETWORK_ERROR, never hangs.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let config = Config::new(1, Platform::Web, random_instance_id());
        let client = Client::new(&format!("ws://127.0.0.1:{port}"), config);
        let err = client.login("alice", "sig").await.unwrap_err();
        assert_eq!(err.code, tim_proto::SDK_NETWORK_ERROR);
        assert_eq!(
            client.logout().await.unwrap_err().code,
            tim_proto::SDK_USER_NOT_LOGGED_IN
        );
        assert_eq!(client.destroy().await, Ok(OpOk::Destroy));
        assert_eq!(
            client.login("alice", "sig").await.unwrap_err().code,
            tim_proto::SDK_INVALID_OPERATION
        );
    }
}
