//! The demo page's server endpoints, on a real `timd` socket: a user's instances and kicks,
//! the login settings and the REST kick run as the admin. The native demo devices are
//! tim-client sessions the executable plugs in: crates/timd-bin/tests/demo_devices.rs.

mod common;
mod rest_client;

use std::time::Duration;

use common::{login_ok, recv, recv_close, Server, APP, WAIT};
use hyper::{Method, StatusCode};
use rest_client::{Answer, Rest, KICK};
use serde_json::json;
use tim_proto::{close, KickReason, ServerFrame};
use timd::demo::devices::MAX_DEVICES;
use timd::demo::instances::{DemoInstances, DemoSettings};
use timd::policy::{LoginPolicy, LoginSettings};

/// A demo-mode server with Tencent's default login settings (1 Web, 1 per platform, dual).
async fn demo_server() -> Server {
    Server::start(|c| {
        c.demo = true;
        c.login = LoginSettings::default();
    })
    .await
}

fn client(server: &Server) -> Rest {
    Rest::new(server.addr, APP, common::KEY)
}

async fn call(rest: &Rest, method: Method, path: &str) -> Answer {
    rest.request(method, path, "").await
}

async fn instances(rest: &Rest, user: &str) -> DemoInstances {
    let a = call(rest, Method::GET, &format!("/demo/instances?user={user}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    serde_json::from_value(a.json).unwrap()
}

/// Polls `/demo/instances` until `cond` holds (the page sees the same).
async fn instances_until(
    rest: &Rest,
    user: &str,
    what: &str,
    cond: impl Fn(&DemoInstances) -> bool,
) -> DemoInstances {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = instances(rest, user).await;
        if cond(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}; last {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn settings_are_the_servers_login_settings() {
    let mut server = Server::start(|c| {
        c.demo = true;
        c.login = LoginSettings {
            web_instances: 3,
            platform_instances: 2,
            policy: LoginPolicy::Triple,
        };
    })
    .await;
    let rest = client(&server);
    let a = call(&rest, Method::GET, "/demo/settings").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["SDKAppID"], APP);
    assert_eq!(a.json["webInstances"], 3);
    assert_eq!(a.json["platformInstances"], 2);
    assert_eq!(a.json["policy"], "triple");
    assert_eq!(a.json["admin"], "administrator");
    assert_eq!(a.json["maxDemoDevices"], MAX_DEVICES);
    let typed: DemoSettings = serde_json::from_value(a.json).unwrap();
    assert_eq!(typed.resume_grace_ms, server.state.config().resume_grace_ms);
    server.stop().await;
}

#[tokio::test]
async fn instances_and_the_admin_kick_as_the_page_sees_them() {
    let mut server = demo_server().await;
    let rest = client(&server);
    let user = "demo_alice";

    let empty = instances(&rest, user).await;
    assert_eq!(empty.user, user);
    assert!(empty.instances.is_empty() && empty.kicks.is_empty());

    // A tab logs in: listed as Web, online, not a demo device, with its login time.
    let before = instances(&rest, user).await.server_time;
    let mut tab = server.connect().await;
    login_ok(&mut tab, 1, user, "tab-1").await;
    let list = instances(&rest, user).await;
    assert_eq!(list.instances.len(), 1);
    let web = &list.instances[0];
    assert_eq!(
        (web.instance.as_str(), web.platform.as_str()),
        ("tab-1", "Web")
    );
    assert!(web.online && !web.demo_device);
    assert!(web.since >= before && web.since <= list.server_time);

    // The REST kick, run as the admin: the tab gets `kicked` REST_API_Kick.
    let a = call(&rest, Method::POST, &format!("/demo/kick?user={user}")).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = a.checked();
    assert_eq!(a.code(), 0);
    assert_eq!(
        recv(&mut tab).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    assert_eq!(recv_close(&mut tab).await, close::KICKED);
    let list = instances_until(&rest, user, "the kick listed", |l| !l.kicks.is_empty()).await;
    assert!(list.instances.is_empty(), "{list:?}");
    let kick = &list.kicks[0];
    assert_eq!(
        (kick.instance.as_str(), kick.platform.as_str(), kick.reason),
        ("tab-1", "Web", KickReason::RestApi)
    );
    assert!(kick.at >= kick.since);

    // Same answer as the REST API itself for an account that never logged in.
    let a = call(&rest, Method::POST, "/demo/kick?user=nobody_here").await;
    assert_eq!(a.checked().code(), 70107);
    let real = rest.call(KICK, json!({ "UserID": "nobody_here" })).await;
    assert_eq!(real.code(), 70107);
    server.stop().await;
}

/// The native devices are the executable's (`timd serve --demo` plugs tim-client in:
/// crates/timd-bin/tests/demo_devices.rs runs them); a server without a driver says so.
#[tokio::test]
async fn devices_need_a_driver_plugged_in() {
    let mut server = demo_server().await;
    let rest = client(&server);
    let a = call(
        &rest,
        Method::POST,
        "/demo/devices?user=alice&platform=Android",
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.json);
    assert_eq!(a.json["code"], 503);
    assert!(a.json["message"]
        .as_str()
        .unwrap()
        .contains("timd serve --demo"));
    let a = call(&rest, Method::GET, "/demo/devices").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["max"], MAX_DEVICES);
    assert!(a.json["devices"].as_array().unwrap().is_empty());
    assert!(instances(&rest, "alice").await.instances.is_empty());
    let a = call(&rest, Method::DELETE, "/demo/devices/abc").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn bad_demo_requests_are_refused_with_70402() {
    let mut server = demo_server().await;
    let rest = client(&server);
    for (method, path) in [
        (Method::GET, "/demo/instances"),
        (Method::GET, "/demo/instances?user=a%20b"),
        (Method::POST, "/demo/devices?user=alice"),
        (Method::POST, "/demo/devices?user=alice&platform=Web"),
        (Method::POST, "/demo/devices?user=alice&platform=Nokia"),
        (Method::POST, "/demo/devices?platform=Android"),
        (Method::POST, "/demo/kick"),
        (
            Method::POST,
            "/demo/kick?user=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
    ] {
        let a = call(&rest, method.clone(), path).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert_eq!(a.json["code"], 70402, "{method} {path}: {}", a.json);
        assert!(a.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let devices = call(&rest, Method::GET, "/demo/devices").await;
    assert_eq!(devices.json["devices"], json!([]), "{}", devices.json);
    server.stop().await;
}

#[tokio::test]
async fn demo_endpoints_do_not_exist_outside_demo_mode() {
    use axum::body::Body;
    use tower::ServiceExt;
    let mut server = Server::start(|_| {}).await;
    for (method, path) in [
        ("GET", "/demo/settings"),
        ("GET", "/demo/instances?user=alice"),
        ("GET", "/demo/devices"),
        ("POST", "/demo/devices?user=alice&platform=Android"),
        ("DELETE", "/demo/devices/abc"),
        ("POST", "/demo/kick?user=alice"),
    ] {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let r = timd::app(server.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    server.stop().await;
}
