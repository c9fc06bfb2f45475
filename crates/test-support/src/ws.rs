//! A raw WebSocket client speaking timd's JSON frames, for tests that check the wire
//! itself (the SDK-level client is `tim_client`).

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tim_proto::{ClientFrame, Login, LoginOk, Platform, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{sig, APP, WAIT};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a socket to `url` (`ws://ADDR/ws`).
pub async fn connect(url: &str) -> Ws {
    try_connect_with(url, &[])
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// Opens a socket to `url` with extra request headers (`Origin`, `X-Forwarded-For`, ...).
pub async fn try_connect_with(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::http::{HeaderName, HeaderValue};
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// A Web `login` frame for the test app.
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

/// A round-trip barrier: sends a `ping` on `ws` and returns every frame the server sent
/// before its `pong` (the server's own heartbeat `ping`s left out). The server answers a
/// socket's frames in order, and a kick already decided for this socket goes out before
/// anything the socket sends afterwards (its task takes registry commands first), so once
/// the `pong` is here, everything the server had decided for this socket when it read the
/// `ping` has arrived. This is how a test proves that something did *not* happen, without a
/// quiet window a late frame could miss.
pub async fn round_trip(ws: &mut Ws) -> Vec<ServerFrame> {
    send(ws, &ClientFrame::Ping).await;
    let mut before = Vec::new();
    loop {
        match recv(ws).await {
            ServerFrame::Pong => return before,
            ServerFrame::Ping => continue,
            other => before.push(other),
        }
    }
}

/// Nothing arrived for `ws` (it is not kicked, not told anything): a [`round_trip`] finds
/// no frame before its `pong`.
pub async fn expect_untouched(ws: &mut Ws) {
    let before = round_trip(ws).await;
    assert!(
        before.is_empty(),
        "expected nothing before the pong, got {before:?}"
    );
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

/// Logs `user` in on `ws` as Web `instance` and returns the `login_ok`.
pub async fn login_ok(ws: &mut Ws, seq: u32, user: &str, instance: &str) -> LoginOk {
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
