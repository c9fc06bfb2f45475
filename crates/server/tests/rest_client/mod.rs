//! A real HTTP/1.1 client (hyper, one TCP connection per request) for the REST API, and
//! the admin URLs a Tencent REST client would build.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

pub const ADMIN: &str = "administrator";
pub const KICK: &str = "/v4/im_open_login_svc/kick";
pub const IMPORT: &str = "/v4/im_open_login_svc/account_import";
pub const MULTI_IMPORT: &str = "/v4/im_open_login_svc/multiaccount_import";
pub const DELETE: &str = "/v4/im_open_login_svc/account_delete";
pub const CHECK: &str = "/v4/im_open_login_svc/account_check";
pub const ONLINE: &str = "/v4/openim/query_online_status";
pub const APIS: [&str; 6] = [KICK, IMPORT, MULTI_IMPORT, DELETE, CHECK, ONLINE];

/// One answer: HTTP status, Content-Type, and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub json: Value,
}

impl Answer {
    pub fn code(&self) -> u64 {
        self.json["ErrorCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("no ErrorCode in {}", self.json))
    }

    /// Asserts the common envelope: HTTP 200, JSON, and consistent ActionStatus/ErrorInfo.
    pub fn checked(self) -> Answer {
        assert_eq!(self.status, StatusCode::OK, "{}", self.json);
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        let code = self.code();
        let status = self.json["ActionStatus"].as_str().unwrap();
        let info = self.json["ErrorInfo"].as_str().unwrap();
        if code == 0 {
            assert_eq!((status, info), ("OK", ""), "{}", self.json);
        } else {
            assert_eq!(status, "FAIL", "{}", self.json);
            assert!(!info.is_empty(), "{}", self.json);
        }
        self
    }
}

/// Talks to one server as the admin of app `sdkappid`.
#[derive(Clone)]
pub struct Rest {
    pub addr: SocketAddr,
    pub sdkappid: u32,
    pub key: String,
}

static RANDOM: AtomicU32 = AtomicU32::new(1);

impl Rest {
    pub fn new(addr: SocketAddr, sdkappid: u32, key: &str) -> Rest {
        Rest {
            addr,
            sdkappid,
            key: key.to_owned(),
        }
    }

    /// A fresh admin UserSig, issued `age` seconds ago.
    pub fn admin_sig(&self, age: u64) -> String {
        tim_usersig::generate(self.sdkappid, &self.key, ADMIN, unix_now() - age, 3600)
    }

    /// The query string Tencent's server SDKs send.
    pub fn query(&self) -> String {
        format!(
            "sdkappid={}&identifier={ADMIN}&usersig={}&random={}&contenttype=json",
            self.sdkappid,
            self.admin_sig(0),
            RANDOM.fetch_add(7919, Ordering::Relaxed)
        )
    }

    /// `POST api` as the admin with a JSON body; the envelope is checked.
    pub async fn call(&self, api: &str, body: Value) -> Answer {
        self.post(&format!("{api}?{}", self.query()), body.to_string())
            .await
            .checked()
    }

    pub async fn post(&self, path_and_query: &str, body: impl Into<Bytes>) -> Answer {
        self.request(Method::POST, path_and_query, body).await
    }

    /// One request on a new connection.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> Answer {
        self.try_request(method, path_and_query, body)
            .await
            .unwrap_or_else(|e| panic!("{path_and_query}: {e}"))
    }

    /// Like [`Rest::request`], but a transport failure (server gone) is an `Err`.
    pub async fn try_request(
        &self,
        method: Method,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body.into()))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let json = serde_json::from_slice(&bytes)
            .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))?;
        Ok(Answer {
            status,
            content_type,
            json,
        })
    }

    /// `account_check` of one account: `"Imported"` or `"NotImported"`.
    pub async fn status_of(&self, user: &str) -> String {
        let a = self
            .call(
                CHECK,
                serde_json::json!({ "CheckItem": [{ "UserID": user }] }),
            )
            .await;
        assert_eq!(a.code(), 0, "{}", a.json);
        a.json["ResultItem"][0]["AccountStatus"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
