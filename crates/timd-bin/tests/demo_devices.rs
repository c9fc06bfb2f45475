//! `timd serve --demo`'s native demo devices, as the demo page drives them over HTTP: the
//! executable plugs tim-client into the server library's device routes, so these run the
//! real binary with real tim-client devices on its own `/ws`, beside a raw-socket tab.

use std::time::Duration;

use serde_json::Value;
use tim_proto::{close, KickReason, ServerFrame};
use tim_test_support::{login_ok, recv, recv_close, TimdNode, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMD: &str = env!("CARGO_BIN_EXE_timd");
/// The server's bound on running devices (`timd::demo::devices::MAX_DEVICES`).
const MAX_DEVICES: usize = 10;

/// `timd serve --demo` with Tencent's default login settings (1 Web, 1 per platform, dual).
fn demo_node() -> TimdNode {
    TimdNode::builder().bin(TIMD).arg("--demo").start()
}

/// One HTTP request with an empty body, as the page's `fetch`: `(status, JSON body)`.
async fn call(node: &TimdNode, method: &str, path: &str) -> (u16, Value) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        node.addr()
    );
    let answer = async {
        let mut tcp = TcpStream::connect(node.addr()).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        raw
    };
    // A device's login, logout or destroy may each take up to 5 s before the server gives up.
    let raw = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {path}"));
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, json)
}

async fn instances(node: &TimdNode, user: &str) -> Value {
    let (status, json) = call(node, "GET", &format!("/demo/instances?user={user}")).await;
    assert_eq!(status, 200, "{json}");
    json
}

/// `(platform, instance, demoDevice)` of each instance in a `/demo/instances` answer.
fn rows(list: &Value) -> Vec<(String, String, bool)> {
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["platform"].as_str().unwrap().to_owned(),
                i["instance"].as_str().unwrap().to_owned(),
                i["demoDevice"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn platforms(list: &Value) -> Vec<String> {
    rows(list).into_iter().map(|r| r.0).collect()
}

/// The instance ids `/demo/devices` lists.
async fn devices(node: &TimdNode) -> Vec<String> {
    let (status, json) = call(node, "GET", "/demo/devices").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["max"], MAX_DEVICES);
    json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["instance"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls until `cond` holds on what `get` answers (the page polls the same way).
async fn until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    mut get: impl FnMut() -> F,
    cond: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = get().await;
        if cond(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}; last {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a device; its instance id.
async fn start(node: &TimdNode, user: &str, platform: &str) -> String {
    let path = format!("/demo/devices?user={user}&platform={platform}");
    let (status, json) = call(node, "POST", &path).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        (json["user"].as_str(), json["platform"].as_str()),
        (Some(user), Some(platform))
    );
    json["instance"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn devices_log_in_are_kicked_and_log_out_as_the_page_sees_them() {
    devices_as_the_page_sees_them(demo_node()).await;
}

/// The same in cluster mode: the page's instances come from Redis, its kicks from the
/// tombstones there, and the devices read kick times through the backend.
#[tokio::test]
async fn devices_as_the_page_sees_them_in_cluster_mode() {
    let redis = tim_test_support::RedisServer::start();
    let node = TimdNode::builder()
        .bin(TIMD)
        .arg("--demo")
        .redis(&redis.url())
        .start();
    devices_as_the_page_sees_them(node).await;
}

async fn devices_as_the_page_sees_them(node: TimdNode) {
    let user = "demo_alice";
    let mut tab = tim_test_support::ws::connect(&node.ws_url()).await;
    login_ok(&mut tab, 1, user, "tab-1").await;

    // A native Android device, run by the server itself: listed beside the tab (dual).
    let android = start(&node, user, "Android").await;
    let list = instances(&node, user).await;
    assert_eq!(
        rows(&list),
        [
            ("Web".into(), "tab-1".into(), false),
            ("Android".into(), android.clone(), true)
        ]
    );
    assert_eq!(devices(&node).await, [android.as_str()]);

    // An iPhone under "dual" kicks the Android device (multipleDevice), not the tab; the
    // kicked device ends by itself.
    let iphone = start(&node, user, "iPhone").await;
    let list = until(
        "iPhone replaces Android",
        || instances(&node, user),
        |l| platforms(l) == ["Web", "iPhone"],
    )
    .await;
    let kick = &list["kicks"][0];
    assert_eq!(kick["instance"], android.as_str());
    assert_eq!(kick["platform"], "Android");
    assert_eq!(kick["reason"], "multipleDevice");
    until(
        "the kicked device ends",
        || devices(&node),
        |d| d == &[iphone.as_str()],
    )
    .await;

    // The page logs the iPhone out: gone once answered, and not as a kick.
    let (status, json) = call(&node, "DELETE", &format!("/demo/devices/{iphone}")).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["platform"], "iPhone");
    let list = instances(&node, user).await;
    assert_eq!(platforms(&list), ["Web"]);
    assert_eq!(
        list["kicks"].as_array().unwrap().len(),
        1,
        "a logout is no kick: {list}"
    );
    assert!(devices(&node).await.is_empty());
    let (status, _) = call(&node, "DELETE", &format!("/demo/devices/{iphone}")).await;
    assert_eq!(status, 404);

    // The REST kick, run as the admin: the tab gets `kicked` REST_API_Kick, a device too,
    // and the kicked device ends.
    let mac = start(&node, user, "Mac").await;
    let (status, json) = call(&node, "POST", &format!("/demo/kick?user={user}")).await;
    assert_eq!(
        (status, json["ErrorCode"].as_u64()),
        (200, Some(0)),
        "{json}"
    );
    assert_eq!(
        recv(&mut tab).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    assert_eq!(recv_close(&mut tab).await, close::KICKED);
    let list = instances(&node, user).await;
    assert!(rows(&list).is_empty(), "{list}");
    let rest_kicks: Vec<&str> = list["kicks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["reason"] == "REST_API_Kick")
        .map(|k| k["instance"].as_str().unwrap())
        .collect();
    assert_eq!(rest_kicks.len(), 2, "{list}");
    assert!(rest_kicks.contains(&"tab-1") && rest_kicks.contains(&mac.as_str()));
    until("the kicked Mac ends", || devices(&node), Vec::is_empty).await;
}

#[tokio::test]
async fn devices_are_bounded_and_do_not_hold_up_shutdown() {
    let mut node = demo_node();
    let mut started = Vec::new();
    for n in 0..MAX_DEVICES {
        started.push(start(&node, &format!("dev_{n}"), "Windows").await);
    }
    let (status, json) = call(
        &node,
        "POST",
        "/demo/devices?user=one_too_many&platform=Windows",
    )
    .await;
    assert_eq!(status, 429, "{json}");
    assert!(rows(&instances(&node, "one_too_many").await).is_empty());
    for (n, instance) in started.iter().enumerate() {
        let list = instances(&node, &format!("dev_{n}")).await;
        assert_eq!(rows(&list), [("Windows".into(), instance.clone(), true)]);
    }
    assert_eq!(devices(&node).await, started);

    // SIGTERM with every device running: a clean exit, every socket closed in the grace.
    let status = node.terminate();
    assert!(status.success(), "{status:?}");
    let log = node.log();
    assert!(!log.contains("sockets still open"), "{log}");
}
