//! Shared helpers: a real `timd` on 127.0.0.1:0 and a tokio-tungstenite client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tempfile::TempDir;
use tim_proto::{ClientFrame, Login, Platform, ServerFrame};
use timd::{AppState, Config};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP: u32 = 1_400_000_001;
pub const KEY: &str = "integration-test-key";
/// Generous bound for anything the server should do "at once".
pub const WAIT: Duration = Duration::from_secs(2);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts a server for app `APP`/`KEY` with `tweak` applied to the config.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), tweak).await
    }

    /// Like [`Server::start`] on an existing data directory (a restart).
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config::new(APP, KEY);
        config.data_dir = dir.path().join("data");
        // Room for every instance unless a test sets the login settings it is about.
        config.login = timd::policy::LoginSettings {
            web_instances: 10,
            platform_instances: 3,
            policy: timd::policy::LoginPolicy::All,
        };
        tweak(&mut config);
        let state = AppState::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(timd::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            state,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn connect(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .unwrap();
        ws
    }

    /// Connects with extra request headers (`Origin`, `X-Forwarded-For`, ...).
    pub async fn connect_with(&self, headers: &[(&str, &str)]) -> Ws {
        self.try_connect_with(headers).await.unwrap()
    }

    pub async fn try_connect_with(
        &self,
        headers: &[(&str, &str)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let mut request = format!("ws://{}/ws", self.addr).into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Ok(tokio_tungstenite::connect_async(request).await?.0)
    }

    /// Connects as client `addr`, through a trusted proxy on loopback (the server must
    /// trust 127.0.0.1).
    pub async fn connect_from(&self, addr: &str) -> Ws {
        self.connect_with(&[("x-forwarded-for", addr)]).await
    }

    /// Triggers graceful shutdown and waits for `run` to return.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("run returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A UserSig for `user` from the test app, valid for an hour from now.
pub fn sig(user: &str) -> String {
    tim_usersig::generate(APP, KEY, user, now(), 3600)
}

pub fn login(seq: u32, user: &str, usersig: &str, instance: &str) -> ClientFrame {
    ClientFrame::Login(Login {
        seq,
        sdkappid: APP,
        user: user.into(),
        usersig: usersig.into(),
        platform: Platform::Web,
        instance: instance.into(),
    })
}

pub async fn send(ws: &mut Ws, frame: &ClientFrame) {
    send_text(ws, &serde_json::to_string(frame).unwrap()).await;
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

/// The next server frame (a text message), failing on anything else or on silence.
pub async fn recv(ws: &mut Ws) -> ServerFrame {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait bound")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("bad server frame {t}: {e}"))
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Waits for the server's close frame and returns its code.
pub async fn recv_close(ws: &mut Ws) -> u16 {
    recv_close_within(ws, WAIT).await
}

pub async fn recv_close_within(ws: &mut Ws, bound: Duration) -> u16 {
    loop {
        let msg = tokio::time::timeout(bound, ws.next())
            .await
            .expect("close within the wait bound")
            .expect("a close frame before the end of the stream")
            .expect("no socket error before the close frame");
        match msg {
            Message::Close(Some(frame)) => {
                // Keep polling, as a browser does, so the client's close reply goes out
                // and the server's close handshake ends without waiting.
                let _ =
                    tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
                return u16::from(frame.code);
            }
            Message::Close(None) => panic!("close frame without a code"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected close, got {other:?}"),
        }
    }
}

/// Logs `user` in on `ws` as `instance` and returns the `login_ok`.
pub async fn login_ok(ws: &mut Ws, seq: u32, user: &str, instance: &str) -> tim_proto::LoginOk {
    send(ws, &login(seq, user, &sig(user), instance)).await;
    match recv(ws).await {
        ServerFrame::LoginOk(ok) => ok,
        other => panic!("expected login_ok, got {other:?}"),
    }
}

/// Expects an `error` frame and returns `(seq, code, message)`.
pub async fn recv_error(ws: &mut Ws) -> (Option<u32>, u32, String) {
    match recv(ws).await {
        ServerFrame::Error(e) => (e.seq, e.code, e.message),
        other => panic!("expected error, got {other:?}"),
    }
}

/// Polls `cond` until true (or fails after the wait bound).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The network drops under `ws` (no logout): waits until alice's instance is away.
pub async fn go_away(server: &Server, ws: Ws) {
    drop(ws);
    eventually("away", || {
        server
            .state
            .registry()
            .instances("alice")
            .iter()
            .any(|i| !i.attached)
    })
    .await;
}
