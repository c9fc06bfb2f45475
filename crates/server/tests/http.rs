//! Router-level tests: `app(state)` driven with `tower::ServiceExt::oneshot`, no socket.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use tempfile::TempDir;
use timd::config::{DEMO_KEY, DEMO_SDKAPPID};
use timd::demo::{DemoError, DemoUserSig};
use timd::{app, AppState, Config};
use tower::ServiceExt;

/// A state over a temp dir holding `www/index.html`, `pkg/tim_wasm_bg.wasm`, `pkg/tim_wasm.js`.
async fn state(demo: bool) -> (AppState, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html><title>demo</title>").unwrap();
    std::fs::write(pkg.join("tim_wasm_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(pkg.join("tim_wasm.js"), "export default 1;").unwrap();
    let mut config = if demo {
        Config::demo()
    } else {
        Config::new(1_400_000_001, "k")
    };
    config.data_dir = dir.path().join("data");
    config.www_dir = www;
    config.pkg_dir = pkg;
    (AppState::open(config).await.unwrap(), dir)
}

async fn get(state: &AppState, uri: &str) -> Response {
    app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(response: Response) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

fn header(response: &Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn healthz_is_ok_in_both_modes() {
    for demo in [false, true] {
        let (state, _dir) = state(demo).await;
        let r = get(&state, "/healthz").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, b"ok");
    }
}

#[tokio::test]
async fn demo_usersig_verifies_for_the_demo_app() {
    let (state, _dir) = state(true).await;
    let r = get(&state, "/demo/usersig?user=alice").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, header::CONTENT_TYPE).starts_with("application/json"));
    let raw = body(r).await;
    let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(json["SDKAppID"], DEMO_SDKAPPID);
    assert_eq!(json["userID"], "alice");
    let reply: DemoUserSig = serde_json::from_slice(&raw).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        tim_usersig::verify(&reply.user_sig, DEMO_KEY, DEMO_SDKAPPID, "alice", now).unwrap();
    assert_eq!(claims.expire, 15_552_000);

    let r = get(&state, "/demo/usersig?user=bob&expire=60").await;
    let reply: DemoUserSig = serde_json::from_slice(&body(r).await).unwrap();
    let claims = tim_usersig::verify(&reply.user_sig, DEMO_KEY, DEMO_SDKAPPID, "bob", now).unwrap();
    assert_eq!(claims.expire, 60);
}

#[tokio::test]
async fn demo_usersig_rejects_bad_input_with_70402() {
    let (state, _dir) = state(true).await;
    for uri in [
        "/demo/usersig",
        "/demo/usersig?user=",
        "/demo/usersig?user=a%20b",
        "/demo/usersig?user=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "/demo/usersig?user=alice&expire=0",
        "/demo/usersig?user=alice&expire=soon",
    ] {
        let r = get(&state, uri).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
        let e: DemoError = serde_json::from_slice(&body(r).await).unwrap();
        assert_eq!(e.code, 70402, "{uri}");
        assert!(!e.message.is_empty());
    }
}

#[tokio::test]
async fn demo_routes_do_not_exist_outside_demo_mode() {
    let (state, _dir) = state(false).await;
    for uri in [
        "/demo/usersig?user=alice",
        "/",
        "/index.html",
        "/pkg/tim_wasm_bg.wasm",
        "/pkg/tim_wasm.js",
    ] {
        assert_eq!(
            get(&state, uri).await.status(),
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn static_files_have_browser_ready_types_and_no_cache() {
    let (state, _dir) = state(true).await;
    let r = get(&state, "/pkg/tim_wasm_bg.wasm").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::CONTENT_TYPE), "application/wasm");
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
    assert_eq!(body(r).await, b"\0asm\x01\0\0\0");

    let r = get(&state, "/pkg/tim_wasm.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, header::CONTENT_TYPE).starts_with("text/javascript"));
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");

    for uri in ["/", "/index.html"] {
        let r = get(&state, uri).await;
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        assert!(header(&r, header::CONTENT_TYPE).starts_with("text/html"));
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
        assert!(body(r).await.starts_with(b"<!doctype html>"));
    }
    assert_eq!(
        get(&state, "/missing.js").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&state, "/pkg/../data/timd.sqlite3").await.status(),
        StatusCode::NOT_FOUND
    );
}
