//! Demo mode cannot mint production or admin UserSigs for a web page: `/demo/usersig` never
//! signs for the admin (only `/demo/admin-usersig`, the console's fill-in, does, with the
//! public demo key alone), it hands out no UserSig with a key of its own, and answers only
//! requests for a loopback host name from loopback origins (no DNS rebinding, no
//! cross-site calls). Real HTTP over real sockets.

mod common;

use common::*;
use timd::config::{DEMO_KEY, DEMO_SDKAPPID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 request with exactly these headers; returns (status, body).
async fn http(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn demo_server(key: &str) -> Server {
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "<!doctype html>demo").unwrap();
    let www = www.keep();
    let key = key.to_owned();
    Server::start(move |c| {
        c.demo = true;
        c.sdkappid = DEMO_SDKAPPID;
        c.key = key;
        c.www_dir = www;
    })
    .await
}

#[tokio::test]
async fn the_demo_never_signs_for_the_admin() {
    let server = demo_server(DEMO_KEY).await;
    let host = server.addr.to_string();
    let (status, body) = http(
        &server,
        "GET",
        "/demo/usersig?user=administrator",
        &[("Host", &host)],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin"), "{body}");
    let (status, body) = http(
        &server,
        "GET",
        "/demo/usersig?user=alice",
        &[("Host", &host)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_rebound_host_name_or_a_foreign_origin_gets_nothing() {
    let server = demo_server(DEMO_KEY).await;
    let port = server.addr.port();
    let evil_host = format!("rebind.evil.example:{port}");
    for path in ["/demo/usersig?user=alice", "/", "/demo/settings"] {
        let (status, body) = http(&server, "GET", path, &[("Host", &evil_host)]).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = http(
        &server,
        "POST",
        "/demo/kick?user=alice",
        &[
            ("Host", &format!("127.0.0.1:{port}")),
            ("Origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    // The page's own requests pass: loopback names, loopback origins, or none at all.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let origin = format!("http://{host}");
        let (status, body) = http(
            &server,
            "GET",
            "/demo/usersig?user=alice",
            &[("Host", &host), ("Origin", &origin)],
        )
        .await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, _) = http(
        &server,
        "GET",
        "/",
        &[("Host", &format!("localhost:{port}"))],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn with_a_key_of_its_own_demo_mode_hands_out_no_usersig() {
    let server = demo_server("a-real-production-key").await;
    let host = server.addr.to_string();
    let (status, body) = http(
        &server,
        "GET",
        "/demo/usersig?user=alice",
        &[("Host", &host)],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = http(&server, "GET", "/demo/settings", &[("Host", &host)]).await;
    assert_eq!(status, 200);
    let (status, body) = http(&server, "GET", "/", &[("Host", &host)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("demo"));
    // The REST API and /ws are not demo routes: they answer as always.
    let (status, _) = http(&server, "GET", "/healthz", &[("Host", &host)]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_console_gets_an_admin_usersig_from_the_demo_key_only() {
    let server = demo_server(DEMO_KEY).await;
    let host = server.addr.to_string();
    let (status, body) = http(&server, "GET", "/demo/admin-usersig", &[("Host", &host)]).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["SDKAppID"], DEMO_SDKAPPID);
    assert_eq!(answer["userID"], "administrator");
    let sig = answer["userSig"].as_str().unwrap();
    tim_usersig::verify(sig, DEMO_KEY, DEMO_SDKAPPID, "administrator", now()).unwrap();
    // Behind the fence like every demo route.
    let evil = format!("rebind.evil.example:{}", server.addr.port());
    let (status, _) = http(&server, "GET", "/demo/admin-usersig", &[("Host", &evil)]).await;
    assert_eq!(status, 403);
    // The console offers to fill it in.
    let (status, page) = http(&server, "GET", "/console", &[("Host", &host)]).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"name="timd-demo" content="1""#), "{page}");

    let own = demo_server("a-real-production-key").await;
    let host = own.addr.to_string();
    let (status, body) = http(&own, "GET", "/demo/admin-usersig", &[("Host", &host)]).await;
    assert_eq!(status, 403, "{body}");
    let (_, page) = http(&own, "GET", "/console", &[("Host", &host)]).await;
    assert!(page.contains(r#"name="timd-demo" content="0""#), "{page}");
}

/// The console is served in every mode, with its files built in and a strict CSP.
#[tokio::test]
async fn the_console_is_served_without_demo_mode() {
    let server = Server::start(|_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /console HTTP/1.1\r\nHost: timd.example.com\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{text}"
    );
    assert!(text.contains("x-frame-options: deny"));
    assert!(text.contains(&format!(r#"name="timd-sdkappid" content="{APP}""#)));
    assert!(text.contains(r#"name="timd-demo" content="0""#));
    for path in ["/console/console.js", "/console/console.css"] {
        let (status, body) = http(&server, "GET", path, &[("Host", "timd.example.com")]).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.len() > 1000, "{path}");
    }
    // No demo route without --demo.
    let (status, _) = http(
        &server,
        "GET",
        "/demo/admin-usersig",
        &[("Host", "127.0.0.1")],
    )
    .await;
    assert_eq!(status, 404);
}
