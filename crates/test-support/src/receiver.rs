//! A callback receiver the tests and benchmarks run: a real HTTP/1 server on loopback that
//! records every State.StateChange request timd sends (query, body, when) and answers as
//! the test says ([`Answer`]): accepted, an HTTP error, an `ErrorCode`, or never. It can go
//! down (nothing listens: connections are refused) and come back on the same port.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200 {"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`.
    Ok,
    /// This HTTP status (with Tencent's OK body).
    Status(u16),
    /// 200 with this `ErrorCode`.
    ErrorCode(i64),
    /// Never answers.
    Hang,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: serde_json::Value,
    pub at: Instant,
    /// When it arrived, unix ms (to compare with `EventTime`).
    pub received_ms: u64,
    /// Whether it was answered [`Answer::Ok`].
    pub accepted: bool,
}

impl Request {
    /// `(Action, Reason, To_Account)`.
    pub fn pair(&self) -> (String, String, String) {
        let info = &self.body["Info"];
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        (
            s(&info["Action"]),
            s(&info["Reason"]),
            s(&info["To_Account"]),
        )
    }

    pub fn user(&self) -> String {
        self.pair().2
    }

    pub fn event_id(&self) -> String {
        self.body["EventID"].as_str().unwrap_or_default().to_owned()
    }

    pub fn event_time(&self) -> u64 {
        self.body["EventTime"].as_u64().unwrap_or_default()
    }

    /// The platforms of `KickedDevice`.
    pub fn kicked(&self) -> Vec<String> {
        self.body["KickedDevice"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| d["Platform"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Each user's (Action, Reason) in arrival order, duplicates (same EventID) dropped: what a
/// receiver that deduplicates sees.
pub fn per_user(requests: &[Request]) -> HashMap<String, Vec<(String, String)>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in requests {
        if seen.insert(r.event_id()) {
            let (a, reason, user) = r.pair();
            out.entry(user).or_default().push((a, reason));
        }
    }
    out
}

/// `(Action, Reason)` pairs as [`per_user`] lists them.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect()
}

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    /// The EventIDs accepted so far (counted without a walk over `requests`).
    accepted_ids: std::collections::HashSet<String>,
    answer: Option<Answer>,
    /// Answers for the next requests, before `answer`.
    script: Vec<Answer>,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts on a free loopback port, answering [`Answer::Ok`].
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            answer: Some(Answer::Ok),
            ..Shared::default()
        }));
        let task = Some(tokio::spawn(serve(listener, Arc::clone(&shared))));
        Receiver { addr, shared, task }
    }

    /// A receiver that is down from the start: its port is reserved but nothing listens
    /// until [`Receiver::up`].
    pub async fn down_from_start() -> Receiver {
        let mut r = Receiver::start().await;
        r.down();
        r
    }

    /// `http://ADDR/im/callback`.
    pub fn url(&self) -> String {
        format!("http://{}/im/callback", self.addr)
    }

    /// Stops listening and drops every open connection: requests are refused.
    pub fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        self.down();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot listen again on {}: {e}", self.addr),
            }
        };
        self.task = Some(tokio::spawn(serve(listener, Arc::clone(&self.shared))));
    }

    /// How every request from now on is answered.
    pub fn answer(&self, answer: Answer) {
        let mut s = self.shared.lock().unwrap();
        s.answer = Some(answer);
        s.script.clear();
    }

    /// The next requests are answered with `answers` in turn, then as before.
    pub fn then(&self, answers: &[Answer]) {
        self.shared.lock().unwrap().script = answers.iter().rev().copied().collect();
    }

    /// How many distinct events (by `EventID`) were accepted so far.
    pub fn accepted_count(&self) -> usize {
        self.shared.lock().unwrap().accepted_ids.len()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The accepted requests so far, in arrival order.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.accepted).collect()
    }

    /// Waits until `n` distinct events (EventIDs) were accepted (panics after `within`), and
    /// returns every accepted request: a retry of one already accepted (its answer was lost
    /// or late) is at-least-once delivery, not a further event.
    pub async fn wait_accepted(&self, n: usize, within: Duration) -> Vec<Request> {
        let deadline = Instant::now() + within;
        loop {
            if self.accepted_count() >= n {
                return self.accepted();
            }
            if Instant::now() > deadline {
                let got = self.accepted();
                panic!(
                    "{} of {n} callbacks accepted within {within:?}: {:#?}",
                    got.len(),
                    got.iter().map(Request::pair).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Mutex<Shared>>) {
    // Owned here: aborting this task drops every connection with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&shared)));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    shared: Arc<Mutex<Shared>>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let received_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let path = req.uri().path().to_owned();
    let query = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let body = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let answer = {
        let mut s = shared.lock().unwrap();
        let answer = s.script.pop().or(s.answer).unwrap_or(Answer::Ok);
        if answer == Answer::Ok {
            if let Some(id) = body["EventID"].as_str() {
                s.accepted_ids.insert(id.to_owned());
            }
        }
        s.requests.push(Request {
            path,
            query,
            body,
            at,
            received_ms,
            accepted: answer == Answer::Ok,
        });
        answer
    };
    const OK: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;
    let (status, text) = match answer {
        Answer::Ok => (200, OK.to_owned()),
        Answer::Status(s) => (s, OK.to_owned()),
        Answer::ErrorCode(c) => (
            200,
            format!(r#"{{"ActionStatus":"FAIL","ErrorInfo":"test","ErrorCode":{c}}}"#),
        ),
        Answer::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    };
    Ok(hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap())
}
