//! `tim-bench bare-server` (hidden): the least a server must do on the wire for
//! `tim_client::Client::login` to succeed, on the same stack as timd, so that
//! `tim-bench sidebyside` can tell what timd's own work costs per login.
//!
//! Same as timd: axum 0.8 WebSocket upgrade at `/ws` with timd's socket settings, the
//! multi-threaded tokio runtime, `timd::listener::bind` with timd's default listen backlog,
//! `TCP_NODELAY` on every accepted socket. What it answers (all the client needs):
//! `login` → `login_ok` (no UserSig check, no store, no policy, no ticket signing: a fixed
//! ticket of a real one's length), `ping` → `pong`, `logout` → `logout_ok`, and while logged in
//! a server `ping` every heartbeat interval (the client counts a server silent for two
//! intervals as gone). `resume` / `renew` are answered with an error (the client then logs in
//! again); the socket is held until the peer closes it.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use clap::Args;
use tim_proto::{
    ClientFrame, ErrorFrame, LoginOk, ServerFrame, ERR_INVALID_PARAMETERS, MAX_FRAME_BYTES,
};
use tokio::time::{sleep_until, Instant};

#[derive(Args)]
pub struct BareArgs {
    /// Where to listen, e.g. 127.0.0.1:9100.
    #[arg(long)]
    listen: SocketAddr,
}

/// timd's default heartbeat (`--heartbeat-ms`).
const HEARTBEAT: Duration = Duration::from_millis(25_000);
/// The UserSig lifetime announced (the bench's UserSigs last a day; nothing is checked).
const EXPIRES_IN: u64 = 86_400;
/// A ticket as long as timd's for the bench's users (~250 bytes), so the `login_ok` frame
/// weighs the same on the wire; it is never checked (`resume` is refused).
const TICKET: &str = concat!(
    "eyJ1IjoiYmFyZSIsImkiOiJiYXJlLXNlcnZlciIsInAiOiJXZWIiLCJzIjoxNzAwMDAwMDAwMDAwLCJlIjoxNzAw",
    "MDg2NDAwLCJ0IjoxNzAwMDAwMDAwLCJ2IjoxNzAwMDg2NDAwfQ.bare-server-ticket-not-signed-xxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
);
/// timd's per-socket settings (crates/server/src/gateway.rs).
const READ_BUFFER_BYTES: usize = 1024;
const MAX_WRITE_BUFFER_BYTES: usize = 2 * MAX_FRAME_BYTES;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until killed; false if it cannot listen.
pub async fn run(args: BareArgs) -> bool {
    let listener = match timd::listener::bind(args.listen, timd::listener::DEFAULT_LISTEN_BACKLOG) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare-server: cannot listen on {}: {e}", args.listen);
            return false;
        }
    };
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/ws", get(upgrade));
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("bare-server: {e}");
        return false;
    }
    true
}

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_upgrade(hold)
}

/// One socket: answers frames, pings while logged in, ends when the peer goes.
async fn hold(mut socket: WebSocket) {
    // Far off until a login: nothing to ping before it.
    let never = Instant::now() + Duration::from_secs(365 * 86_400);
    let timer = sleep_until(never);
    tokio::pin!(timer);
    loop {
        let reply = tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    match answer(text.as_str()) {
                        Answer::LoggedIn(frame) => {
                            timer.as_mut().reset(Instant::now() + HEARTBEAT);
                            Some(frame)
                        }
                        Answer::Frame(frame) => Some(frame),
                        Answer::Nothing => None,
                    }
                }
                Some(Ok(_)) => None,
                Some(Err(_)) | None => return,
            },
            _ = &mut timer => {
                timer.as_mut().reset(Instant::now() + HEARTBEAT);
                Some(ServerFrame::Ping)
            }
        };
        if let Some(frame) = reply {
            let Ok(text) = serde_json::to_string(&frame) else {
                return;
            };
            let sent =
                tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
    }
}

enum Answer {
    /// `login_ok`: the heartbeat starts.
    LoggedIn(ServerFrame),
    Frame(ServerFrame),
    Nothing,
}

fn answer(text: &str) -> Answer {
    let error = |seq, message: &str| {
        Answer::Frame(ServerFrame::Error(ErrorFrame {
            seq,
            code: ERR_INVALID_PARAMETERS,
            message: message.into(),
        }))
    };
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(ClientFrame::Login(login)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Answer::LoggedIn(ServerFrame::LoginOk(LoginOk {
                seq: login.seq,
                ticket: TICKET.into(),
                heartbeat_ms: HEARTBEAT.as_millis() as u32,
                expire_at: now + EXPIRES_IN,
                expires_in: EXPIRES_IN,
            }))
        }
        Ok(ClientFrame::Ping) => Answer::Frame(ServerFrame::Pong),
        Ok(ClientFrame::Pong) => Answer::Nothing,
        Ok(ClientFrame::Logout { seq }) => Answer::Frame(ServerFrame::LogoutOk { seq }),
        Ok(ClientFrame::Resume { seq, .. }) => error(Some(seq), "bare server: log in again"),
        Ok(ClientFrame::Renew { seq, .. }) => error(Some(seq), "bare server: no renewals"),
        Err(_) => error(None, "invalid frame"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames a login needs, in the shapes timd sends (what tim_client parses).
    #[test]
    fn answers_in_timd_shapes() {
        let login = r#"{"login":{"seq":7,"sdkappid":1,"user":"u","usersig":"x","platform":"Web","instance":"i"}}"#;
        let Answer::LoggedIn(ServerFrame::LoginOk(ok)) = answer(login) else {
            panic!("login not answered login_ok");
        };
        assert_eq!(
            (ok.seq, ok.heartbeat_ms, ok.expires_in),
            (7, 25_000, 86_400)
        );
        let text = serde_json::to_string(&ServerFrame::LoginOk(ok)).unwrap();
        assert!(
            text.starts_with(r#"{"login_ok":{"seq":7,"ticket":""#),
            "{text}"
        );
        assert!(matches!(
            answer(r#""ping""#),
            Answer::Frame(ServerFrame::Pong)
        ));
        assert!(matches!(answer(r#""pong""#), Answer::Nothing));
        assert!(matches!(
            answer(r#"{"logout":{"seq":3}}"#),
            Answer::Frame(ServerFrame::LogoutOk { seq: 3 })
        ));
        assert!(matches!(
            answer(r#"{"resume":{"seq":4,"ticket":"t"}}"#),
            Answer::Frame(ServerFrame::Error(ErrorFrame { seq: Some(4), .. }))
        ));
    }

    /// The real native client logs in against it over a real socket, answers its ping and
    /// logs out: what `sidebyside` relies on.
    #[tokio::test]
    async fn tim_client_logs_in_and_out() {
        use tim_client::{Client, Config, Platform};
        let listen = SocketAddr::from(([127, 0, 0, 1], crate::sys::free_port()));
        tokio::spawn(run(BareArgs { listen }));
        while tokio::net::TcpStream::connect(listen).await.is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let client = Client::new(
            &format!("ws://{listen}"),
            Config::new(1, Platform::Web, "i1".to_string()),
        );
        client.login("alice", "not-checked").await.expect("login");
        let status = client.status().await.expect("status");
        assert!(status.ready && status.connected, "{status:?}");
        client.logout().await.expect("logout answered logout_ok");
    }
}
