//! A TCP proxy for the fault tests: sits between clients (a browser page, native clients)
//! and `timd`, and on command passes traffic, cuts every connection (as a network switch
//! does), or black-holes it (connections stay open and silent: a dead NAT or a sleeping
//! laptop's peer). Control: `POST /pass`, `POST /cut`, `POST /blackhole` on the control port.
//!
//! `tim-testproxy --listen ADDR --upstream ADDR --control ADDR`; prints `ready` when
//! listening.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Blackhole,
}

/// The mode, and a counter bumped by every cut.
type State = (Mode, u64);

fn arg(name: &str) -> SocketAddr {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            if let Some(v) = args.next() {
                return v.parse().unwrap_or_else(|e| panic!("{name} {v}: {e}"));
            }
        }
    }
    eprintln!("usage: tim-testproxy --listen ADDR --upstream ADDR --control ADDR");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let (listen, upstream, control) = (arg("--listen"), arg("--upstream"), arg("--control"));
    let (tx, rx) = watch::channel::<State>((Mode::Pass, 0));
    let clients = TcpListener::bind(listen).await.expect("bind --listen");
    let controls = TcpListener::bind(control).await.expect("bind --control");
    println!("ready");
    tokio::spawn(async move {
        while let Ok((socket, _)) = controls.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move { serve_control(socket, &tx).await });
        }
    });
    while let Ok((client, _)) = clients.accept().await {
        let rx = rx.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(upstream).await {
                relay(client, server, rx).await;
            }
        });
    }
}

/// One-line HTTP: enough for `fetch('http://.../cut', { method: 'POST' })`.
async fn serve_control(mut socket: TcpStream, tx: &watch::Sender<State>) {
    let mut buf = [0u8; 1024];
    let n = socket.read(&mut buf).await.unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let ok = match path {
        "/pass" => {
            tx.send_modify(|s| s.0 = Mode::Pass);
            true
        }
        "/blackhole" => {
            tx.send_modify(|s| s.0 = Mode::Blackhole);
            true
        }
        "/cut" => {
            tx.send_modify(|s| s.1 += 1);
            true
        }
        _ => false,
    };
    let (status, body) = if ok {
        ("200 OK", "ok")
    } else {
        ("404 Not Found", "no")
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(reply.as_bytes()).await;
}

/// Copies both ways until either side closes or a cut comes; while black-holed, what
/// arrives is read and dropped.
async fn relay(client: TcpStream, server: TcpStream, rx: watch::Receiver<State>) {
    let cut_at = rx.borrow().1;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pipe(cr, sw, rx.clone(), cut_at) => {}
        _ = pipe(sr, cw, rx.clone(), cut_at) => {}
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<State>,
    cut_at: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                let (mode, cuts) = *rx.borrow();
                if cuts != cut_at {
                    return;
                }
                if mode == Mode::Pass && to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = rx.changed() => {
                if changed.is_err() || rx.borrow().1 != cut_at {
                    return; // cut: dropping both halves resets the connections
                }
            }
        }
    }
}
