//! The callbacks' HTTP/1 client (hyper), made for a receiver that may be slow or hostile:
//! every request is bounded by one timeout (connect, send, answer and body together), the
//! answer's body is read up to [`MAX_ANSWER`] only, redirects are not followed (a 3xx is a
//! failure like any non-2xx), and connections are kept alive and reused (a few idle ones
//! per app). `http://` only.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Uri;
use hyper_util::rt::TokioIo;

/// Bytes of an answer read at most (Tencent's answer is ~50 bytes).
pub const MAX_ANSWER: usize = 16 * 1024;
/// Idle keep-alive connections kept per app at most.
const IDLE_KEPT: usize = 64;

/// A parsed callback URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, to connect to.
    pub authority: String,
    /// The `Host` header.
    pub host: String,
    /// Path and query of the URL as configured.
    pub path_and_query: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("callback URL {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "callback URL {url:?}: https is not supported; give an http:// URL (a \
                     receiver on the same host or private network, or a TLS proxy in front)"
                ))
            }
            _ => return Err(format!("callback URL {url:?} must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("callback URL {url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "callback URL {url:?}: credentials in the URL are not supported (use the token)"
            ));
        }
        let port = authority.port_u16().unwrap_or(80);
        Ok(Endpoint {
            authority: format!("{}:{port}", authority.host()),
            host: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// The request target with `query` added.
    pub fn target(&self, query: &str) -> String {
        let sep = if self.path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{query}", self.path_and_query)
    }
}

/// Why a request did not get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// The connection broke while sending or reading.
    Io,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connect => "connect",
            Failure::Io => "io",
        }
    }
}

/// A small pool of keep-alive connections to one endpoint.
pub struct Client {
    endpoint: Endpoint,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// POSTs `body` as JSON to the endpoint with `query`; the status and (at most
    /// [`MAX_ANSWER`] bytes of) the answer, all within `timeout`.
    pub async fn post(
        &self,
        query: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), Failure> {
        tokio::time::timeout(timeout, self.exchange(query, body))
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    async fn exchange(&self, query: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), Failure> {
        let mut sender = match self.take_idle() {
            Some(s) => s,
            None => self.connect().await?,
        };
        let request = hyper::Request::post(self.endpoint.target(query))
            .header(hyper::header::HOST, &self.endpoint.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| Failure::Io)?;
        sender.ready().await.map_err(|_| Failure::Io)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Failure::Io)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut answer = Vec::new();
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Failure::Io)?;
            if let Ok(data) = frame.into_data() {
                let room = MAX_ANSWER - answer.len();
                answer.extend_from_slice(&data[..data.len().min(room)]);
                if data.len() > room {
                    whole = false;
                    break;
                }
            }
        }
        // A connection whose answer was not read to its end cannot carry another request.
        if whole {
            self.put_idle(sender);
        }
        Ok((status, answer))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let stream = tokio::net::TcpStream::connect(&self.endpoint.authority)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_KEPT && !sender.is_closed() {
            idle.push(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:8080/cb?x=1").unwrap();
        assert_eq!(e.authority, "127.0.0.1:8080");
        assert_eq!(e.host, "127.0.0.1:8080");
        assert_eq!(e.target("a=b"), "/cb?x=1&a=b");
        let e = Endpoint::parse("http://example.com").unwrap();
        assert_eq!(e.authority, "example.com:80");
        assert_eq!(e.target("a=b"), "/?a=b");
        for bad in ["https://x/", "ftp://x/", "x/y", "http://u:p@x/"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
