//! State.StateChange callbacks in cluster mode: three `timd` processes on one real Redis,
//! one receiver. Each pair once in a clean run, whichever node decided; a login on one
//! node that kicks a tab on another carries KickedDevice; when a node holding sessions is
//! killed with `kill -9`, another node reports Disconnect/TimeOut for each of them; and when
//! the node delivering is killed with requests in flight, another takes the delivery over
//! and nothing is lost.

mod common;
mod rest_client;

use std::time::Duration;

use common::*;
use tim_proto::{ClientFrame, KickReason, ServerFrame};
use tim_test_support::receiver::{pairs, per_user, Request};
use tim_test_support::Receiver;

use rest_client::{Rest, KICK};

const DELIVERY: Duration = Duration::from_secs(60);

fn node(redis: &str, receiver: &Receiver) -> TimdNode {
    TimdNode::builder()
        .redis(redis)
        .args(["--lease-ms", "900", "--web-instances", "1"])
        .args(["--callback-url", &receiver.url()])
        .env("TIMD_CALLBACK_TOKEN", "cluster-token")
        .start()
}

async fn online(node: &TimdNode, user: &str, instance: &str) -> Ws {
    let mut ws = tim_test_support::ws::connect(&node.ws_url()).await;
    login_ok(&mut ws, 1, user, instance).await;
    ws
}

#[tokio::test]
async fn three_nodes_report_each_pair_once_and_a_killed_nodes_sessions_time_out() {
    let redis = RedisServer::start();
    each_pair_once_and_a_killed_nodes_sessions_time_out(&redis.url()).await;
}

/// The same on a Redis Cluster (3 primaries, 3 replicas): the app's callback stream is on
/// another slot than the users', so a dead node's TimeOut goes through the two-step path.
#[tokio::test]
async fn the_same_on_a_redis_cluster() {
    let group = tim_test_support::ClusterGroup::start();
    each_pair_once_and_a_killed_nodes_sessions_time_out(&group.url()).await;
}

async fn each_pair_once_and_a_killed_nodes_sessions_time_out(redis: &str) {
    let receiver = Receiver::start().await;
    let n1 = node(redis, &receiver);
    let n2 = node(redis, &receiver);
    let mut n3 = node(redis, &receiver);

    // alice on n1, then on n2 over the Web limit: n1's tab is kicked across nodes.
    let mut a = online(&n1, "alice", "tab-a").await;
    receiver.wait_accepted(1, DELIVERY).await;
    let mut b = online(&n2, "alice", "tab-b").await;
    expect_kicked(&mut a, KickReason::MultipleAccount).await;
    send(&mut b, &ClientFrame::Logout { seq: 2 }).await;
    assert!(matches!(recv(&mut b).await, ServerFrame::LogoutOk { .. }));
    // dave's socket closes without a logout.
    let dave = online(&n1, "dave", "i").await;
    receiver.wait_accepted(4, DELIVERY).await;
    drop(dave);
    // bob and carol are on n3.
    let bob = online(&n3, "bob", "i").await;
    let carol = online(&n3, "carol", "i").await;
    let got = receiver.wait_accepted(7, DELIVERY).await;
    // A clean run so far: every request accepted once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 7, "no duplicates in a clean run");
    let login_b = got
        .iter()
        .filter(|r| r.user() == "alice")
        .nth(1)
        .expect("alice's second login");
    assert_eq!(login_b.kicked(), ["Web"]);
    assert!(got.iter().all(|r| r.query["Sign"].len() == 64));

    // n3 dies holding bob's and carol's sessions.
    let killed = std::time::Instant::now();
    n3.kill9();
    drop((bob, carol));
    let got = receiver.wait_accepted(9, DELIVERY).await;
    println!(
        "TimeOut of a killed node's sessions reached the receiver {:?} after kill -9",
        got[8].at.duration_since(killed)
    );
    let by_user = per_user(&receiver.accepted());
    assert_eq!(
        by_user["alice"],
        pairs(&[
            ("Login", "Register"),
            ("Login", "Register"),
            ("Logout", "Unregister"),
        ])
    );
    assert_eq!(
        by_user["dave"],
        pairs(&[("Login", "Register"), ("Disconnect", "LinkClose")])
    );
    for user in ["bob", "carol"] {
        assert_eq!(
            by_user[user],
            pairs(&[("Login", "Register"), ("Disconnect", "TimeOut")]),
            "{user}"
        );
    }
    // Logins and logouts are stored by the script that decided them (their own EventIDs:
    // `<app>-in-…`, `<app>-out-…`, with the client's address the node passed); a closed
    // socket's LinkClose, decided by no script, by the node before it marks the slot away.
    for r in receiver.accepted() {
        let (action, reason, _) = r.pair();
        let kind = match (action.as_str(), reason.as_str()) {
            ("Login", _) => "in",
            ("Logout", _) => "out",
            (_, "TimeOut") => "to",
            _ => continue,
        };
        let id = r.event_id();
        assert!(id.starts_with(&format!("{APP}-{kind}-")), "{id}");
        if kind != "to" {
            assert_eq!(r.query["ClientIP"], "127.0.0.1", "{id}");
        }
    }
    let timeout = got.iter().find(|r| r.pair().1 == "TimeOut").unwrap();
    assert_eq!(timeout.query["OptPlatform"], "Unknown");
    // Made by a script: its EventID is its own, the same if it is appended twice.
    assert!(
        timeout.event_id().starts_with(&format!("{APP}-to-")),
        "{}",
        timeout.event_id()
    );
    drop((n1, n2));
}

#[tokio::test]
async fn when_the_delivering_node_dies_another_takes_over_and_nothing_is_lost() {
    let redis = RedisServer::start();
    let redis = &redis.url();
    let receiver = Receiver::start().await;
    // Nothing is accepted while the deliverer runs: every request hangs.
    receiver.answer(tim_test_support::Answer::Hang);
    let mut nodes = [
        node(redis, &receiver),
        node(redis, &receiver),
        node(redis, &receiver),
    ];
    // Users log in and out on every node.
    for (i, user) in ["u0", "u1", "u2", "u3", "u4", "u5"].iter().enumerate() {
        let mut ws = online(&nodes[i % 3], user, "i").await;
        send(&mut ws, &ClientFrame::Logout { seq: 2 }).await;
        assert!(matches!(recv(&mut ws).await, ServerFrame::LogoutOk { .. }));
    }
    // The node delivering (the one holding the app's lease) has requests in flight.
    tim_test_support::wait::eventually_within("a request in flight", DELIVERY, || {
        !receiver.requests().is_empty()
    })
    .await;
    let deliverer = (0..3)
        .find(|i| nodes[*i].log().contains("callbacks: this node delivers"))
        .expect("one node delivers");
    nodes[deliverer].kill9();
    receiver.answer(tim_test_support::Answer::Ok);
    let got = receiver.wait_accepted(12, DELIVERY).await;
    let by_user = per_user(&got);
    for user in ["u0", "u1", "u2", "u3", "u4", "u5"] {
        assert_eq!(
            by_user[user],
            pairs(&[("Login", "Register"), ("Logout", "Unregister")]),
            "{user}"
        );
    }
    assert!(
        (0..3)
            .filter(|i| *i != deliverer)
            .any(|i| nodes[i].log().contains("callbacks: this node delivers")),
        "another node took the delivery over"
    );
}

/// A decision and its event are one script: a node killed right after its login script
/// (the event handed back, never written to the app's stream) loses nothing. Simulated by
/// running the node's own `login.lua` as a node "dead0" that never makes its second step;
/// the live node that reaps dead0 writes the Login from the user's outbox, then the
/// TimeOut of the slot it frees, in that order.
#[tokio::test]
async fn an_event_its_deciding_node_never_wrote_is_delivered_by_another() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let n1 = node(&redis.url(), &receiver);
    // n1 delivers (and so has the app's callback on) once it reports its own logins.
    let _ws = online(&n1, "frank", "i").await;
    receiver.wait_accepted(1, DELIVERY).await;

    let scripts = timd::cluster::scripts::Scripts::new();
    let mut inv = scripts.login.prepare_invoke();
    for key in timd::cluster::keys::user_keys(APP, "erin") {
        inv.key(key);
    }
    inv.key(timd::cluster::keys::user_outbox(APP, "erin"));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let expire_at = now_ms / 1000 + 3600;
    inv.arg("dead0")
        .arg(86_400)
        .arg(format!("900|{now_ms}|dead0|{APP}"))
        .arg(77)
        .arg("tab")
        .arg("Web")
        .arg(expire_at.to_string())
        .arg((now_ms / 1000).to_string())
        .arg(1)
        .arg(1)
        .arg("none")
        .arg("10.1.2.3");
    redis.command(&["SADD", "tim:node:dead0:users", &format!("{APP}:erin")]);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let reply: redis::Value = inv.invoke_async(&mut con).await.unwrap();
    assert!(format!("{reply:?}").contains("ok"), "{reply:?}");
    // dead0 dies here: its Login waits in erin's outbox only.
    assert_eq!(
        redis.command(&["HLEN", &format!("tim:{{{APP}:erin}}:o")]),
        "1"
    );
    redis.command(&["ZADD", "tim:nodes", "1", "dead0"]);

    let got = receiver.wait_accepted(3, DELIVERY).await;
    let erin: Vec<&Request> = got.iter().filter(|r| r.user() == "erin").collect();
    let seen: Vec<(String, String)> = erin
        .iter()
        .map(|r| {
            let (a, reason, _) = r.pair();
            (a, reason)
        })
        .collect();
    assert_eq!(
        seen,
        pairs(&[("Login", "Register"), ("Disconnect", "TimeOut")])
    );
    assert_eq!(erin[0].event_id(), format!("{APP}-in-dead0-77"));
    assert_eq!(erin[0].query["ClientIP"], "10.1.2.3");
    assert_eq!(erin[1].event_id(), format!("{APP}-to-dead0-77"));
    assert_eq!(
        redis.command(&["HLEN", &format!("tim:{{{APP}:erin}}:o")]),
        "0"
    );
}

/// A REST kick's Logout is stored by `kick_user.lua` with the kick (not by the kicked
/// socket's node when it hears of it): reported once, by RESTAPI, even though the kick is
/// sent through another node than the one holding the socket.
#[tokio::test]
async fn a_rest_kick_is_reported_once_by_its_script() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let n1 = node(&redis.url(), &receiver);
    let n2 = node(&redis.url(), &receiver);
    let mut g = online(&n2, "gina", "tab").await;
    receiver.wait_accepted(1, DELIVERY).await;
    let answer = Rest::new(n1.addr(), APP, KEY)
        .call(KICK, serde_json::json!({"UserID": "gina"}))
        .await;
    assert_eq!(answer.code(), 0, "{}", answer.json);
    expect_kicked(&mut g, KickReason::RestApi).await;
    let got = receiver.wait_accepted(2, DELIVERY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 2, "reported once");
    assert_eq!(
        per_user(&got)["gina"],
        pairs(&[("Login", "Register"), ("Logout", "Unregister")])
    );
    assert_eq!(got[1].query["OptPlatform"], "RESTAPI");
    assert!(
        got[1].event_id().starts_with(&format!("{APP}-rk-")),
        "{}",
        got[1].event_id()
    );
}

/// What the scripts append is held to `--callback-queue-cap` too: the delivering node trims
/// the app's stream to the cap once a second, counting and logging what it dropped.
#[tokio::test]
async fn what_the_scripts_append_is_held_to_the_cap() {
    let redis = RedisServer::start();
    let receiver = Receiver::down_from_start().await;
    let n1 = TimdNode::builder()
        .redis(&redis.url())
        .args(["--lease-ms", "900", "--callback-queue-cap", "100"])
        .args(["--callback-url", &receiver.url()])
        .start();
    // 150 events appended as a script's second step appends them.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for n in 0..150 {
        let e = format!(
            r#"{{"id":"{APP}-in-x-{n}","u":"u{n}","a":"Login","r":"Register","p":"Web","op":"Web","ip":"","t":1}}"#
        );
        pipe.cmd("XADD")
            .arg(format!("tim:cb:{{{APP}}}"))
            .arg("*")
            .arg("e")
            .arg(e)
            .ignore();
    }
    let () = pipe.query_async(&mut con).await.unwrap();
    let stream = format!("tim:cb:{{{APP}}}");
    tim_test_support::wait::eventually_within("the stream trimmed to the cap", DELIVERY, || {
        redis.command(&["XLEN", &stream]) == "100"
    })
    .await;
    tim_test_support::wait::eventually_within("the drop logged", DELIVERY, || {
        n1.log().contains("callback queue full")
    })
    .await;
}

/// `set_login_settings … ApplyNow` reports each connected instance it kicks, whichever node
/// holds it: `Logout`/`Unregister` by `RESTAPI`, stored by `enforce.lua` with the kick
/// (EventID `<app>-ak-…`), once; an instance away gets no event (its Disconnect was).
#[tokio::test]
async fn an_apply_now_kick_is_reported_once_by_its_script() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let nodes: Vec<TimdNode> = (0..3)
        .map(|_| {
            TimdNode::builder()
                .redis(&redis.url())
                .args(["--lease-ms", "900", "--web-instances", "3"])
                .args(["--callback-url", &receiver.url()])
                .env("TIMD_CALLBACK_TOKEN", "cluster-token")
                .start()
        })
        .collect();
    // hana: tab-1 on node 0 (then away), tab-2 on node 1, tab-3 on node 2 (the latest).
    let t1 = online(&nodes[0], "hana", "tab-1").await;
    receiver.wait_accepted(1, DELIVERY).await;
    drop(t1);
    receiver.wait_accepted(2, DELIVERY).await;
    let mut t2 = online(&nodes[1], "hana", "tab-2").await;
    let mut t3 = online(&nodes[2], "hana", "tab-3").await;
    receiver.wait_accepted(4, DELIVERY).await;
    let answer = Rest::new(nodes[0].addr(), APP, KEY)
        .call(
            "/v4/timd/set_login_settings",
            serde_json::json!({"WebInstances": 1, "ApplyNow": 1}),
        )
        .await;
    assert_eq!(answer.code(), 0, "{}", answer.json);
    expect_kicked(&mut t2, KickReason::MultipleAccount).await;
    expect_untouched(&mut t3).await;
    let got = receiver.wait_accepted(5, DELIVERY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 5, "reported once");
    assert_eq!(
        per_user(&got)["hana"],
        pairs(&[
            ("Login", "Register"),
            ("Disconnect", "LinkClose"),
            ("Login", "Register"),
            ("Login", "Register"),
            ("Logout", "Unregister"),
        ])
    );
    assert_eq!(got[4].query["OptPlatform"], "RESTAPI");
    assert_eq!(got[4].query["ClientIP"], "");
    assert!(
        got[4].event_id().starts_with(&format!("{APP}-ak-")),
        "{}",
        got[4].event_id()
    );
}
