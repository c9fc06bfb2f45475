//! Just enough HTTP/1.1 to scrape timd's `/metrics` and read one metric from it, and to
//! call the admin REST API.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `addr` with `Connection: close`; the body, if the answer is 200.
pub async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (head, body) = exchange(addr, request, Duration::from_secs(5)).await?;
    head.starts_with("HTTP/1.1 200").then_some(body)
}

/// `POST path` with a JSON `body` on `addr` with `Connection: close`; the answer's body,
/// whatever its status (the REST API answers errors in the body).
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Option<String> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (_, body) = exchange(addr, request, Duration::from_secs(10)).await?;
    Some(body)
}

/// Sends `request` on a new connection and reads the answer to its end: `(head, body)`,
/// the body de-chunked (axum answers small bodies with Content-Length, larger ones chunked).
async fn exchange(addr: SocketAddr, request: String, within: Duration) -> Option<(String, String)> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Some((head.to_owned(), body))
    };
    tokio::time::timeout(within, fetch).await.ok().flatten()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The sum of every sample of metric `name` (a counter's `name_total` too) whose labels
/// contain `label` (e.g. `code="0"`; "" for all), from a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let bare = key.split('{').next()?;
            ((bare == name || bare.strip_suffix("_total") == Some(name)) && key.contains(label))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
