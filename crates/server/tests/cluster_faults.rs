//! Cluster mode with real `timd` processes on one real Redis: what only a process gives,
//! `kill -9` of a node and its restart under a new node id.
mod common;
mod rest_client;

use std::time::{Duration, Instant};

use common::{expect_untouched, recv, recv_close, send, sig, RedisServer, TimdNode, APP, KEY};
use futures_util::StreamExt;
use rest_client::{Rest, KICK, ONLINE};
use serde_json::json;
use tim_proto::{close, ClientFrame, KickReason, ServerFrame};
use tim_test_support::wait::eventually_within;
use tim_test_support::Haproxy;

use common::nodes::{login_frame as login, node, online, LEASE_MS};

async fn status(rest: &Rest, user: &str) -> String {
    let answer = rest.call(ONLINE, json!({"To_Account": [user]})).await;
    answer.json["QueryResult"][0]["Status"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", answer.json))
        .to_owned()
}

/// `kill -9` of a node: its slots are free within the lease, nobody elsewhere is kicked,
/// its clients resume on another node with their tickets (their own slots, their places in
/// the login order), and the node restarted (a new node id) refuses what a REST kick revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_frees_its_slots_within_the_lease_and_its_clients_resume_elsewhere() {
    let redis = RedisServer::start();
    let mut a = node(&redis);
    let b = node(&redis);
    let c = node(&redis);
    let rest = Rest::new(b.addr(), APP, KEY);
    let (mut t1, ticket) = online(&a, "alice", "t1").await;
    let (mut t2, _) = online(&b, "alice", "t2").await;
    let (_c1, _) = online(&a, "carol", "c1").await;
    let bob_sig = sig("bob");
    let (mut b1, _) = online(&c, "bob", "b1").await;
    assert_eq!(rest.call(KICK, json!({"UserID": "bob"})).await.code(), 0);
    assert_eq!(
        recv(&mut b1).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    assert_eq!(status(&rest, "carol").await, "Online");
    let a_id = node_id(&a);
    assert_eq!(
        redis.command(&[
            "SISMEMBER",
            &format!("tim:node:{a_id}:users"),
            &format!("{APP}:carol")
        ]),
        "1",
        "the node's index of its users"
    );

    a.kill9();
    let killed = Instant::now();
    // The dead node's socket just ends (no kicked frame).
    let end = tokio::time::timeout(Duration::from_secs(3), t1.next()).await;
    assert!(
        matches!(end, Ok(None | Some(Err(_)))),
        "t1's connection ended: {end:?}"
    );
    // carol never comes back: her slot is free once the lease runs out.
    while status(&rest, "carol").await != "Offline" {
        assert!(killed.elapsed() < Duration::from_millis(LEASE_MS) + Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "slots of a killed node freed after {:?} (lease {LEASE_MS} ms)",
        killed.elapsed()
    );
    expect_untouched(&mut t2).await;
    // A lease after its lease lapsed, a live node reaps the dead one: carol's dead slot, the
    // dead node's index, stream and entry go.
    eventually_within("the dead node reaped", Duration::from_secs(10), || {
        redis.command(&["EXISTS", &format!("tim:node:{a_id}:users")]) == "0"
            && redis.command(&["ZSCORE", "tim:nodes", &a_id]).is_empty()
            && redis.command(&["EXISTS", &format!("tim:{{{APP}:carol}}:s")]) == "0"
    })
    .await;
    println!("dead node reaped after {:?}", killed.elapsed());

    // t1 resumes on c: its own slot, no one kicked.
    let mut t1 = tim_test_support::ws::connect(&c.ws_url()).await;
    send(&mut t1, &ClientFrame::Resume { seq: 2, ticket }).await;
    assert!(matches!(recv(&mut t1).await, ServerFrame::ResumeOk { .. }));
    expect_untouched(&mut t2).await;
    // Still the earliest: the next login evicts t1, not t2.
    let (mut t3, _) = online(&b, "alice", "t3").await;
    assert_eq!(
        recv(&mut t1).await,
        ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        }
    );
    assert_eq!(recv_close(&mut t1).await, close::KICKED);
    expect_untouched(&mut t2).await;
    expect_untouched(&mut t3).await;

    // The restarted node shares the revocation: bob's pre-kick UserSig is refused there.
    tokio::task::block_in_place(|| a.start_again());
    let mut ws = tim_test_support::ws::connect(&a.ws_url()).await;
    send(&mut ws, &login("bob", "b2", &bob_sig)).await;
    match recv(&mut ws).await {
        ServerFrame::Error(e) => assert_eq!(e.code, 70001, "{e:?}"),
        other => panic!("expected 70001, got {other:?}"),
    }
}

/// The node id a node logged at its start.
fn node_id(node: &TimdNode) -> String {
    logged_id(node, "cluster mode node=", false)
}

/// The node id a node runs under now (the last it logged: a new one after a fence).
fn node_id_now(node: &TimdNode) -> String {
    logged_id(node, "reading the node stream node=", true)
}

fn logged_id(node: &TimdNode, marker: &str, last: bool) -> String {
    let log = node.log();
    let at = if last {
        log.rfind(marker)
    } else {
        log.find(marker)
    };
    let at = at.unwrap_or_else(|| panic!("no {marker:?} in {log}")) + marker.len();
    log[at..].split_whitespace().next().unwrap().to_owned()
}

fn signal(node: &TimdNode, signal: &str) {
    let pid = node.pid().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGSTOP of a node (a pause, or a partition from everyone): once its lease lapsed, the
/// others treat its slots as free (new logins take them, kicking no one); on SIGCONT it
/// fences itself at once — its sockets are closed as a restart closes them (1012), so their
/// clients resume, instead of served on slots others took — and joins again under a new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_loses_its_slots_and_fences_itself_when_it_wakes() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);
    let rest = Rest::new(b.addr(), APP, KEY);
    let (mut t1, _) = online(&a, "alice", "t1").await;
    let (mut t2, _) = online(&a, "alice", "t2").await;
    let old_id = node_id(&a);
    signal(&a, "-STOP");
    let stopped = Instant::now();
    while status(&rest, "alice").await != "Offline" {
        assert!(stopped.elapsed() < Duration::from_millis(LEASE_MS) + Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "slots of a paused node free after {:?} (lease {LEASE_MS} ms)",
        stopped.elapsed()
    );
    // Its two slots are free: two new Web logins (the limit) kick no one.
    let (mut t3, _) = online(&b, "alice", "t3").await;
    let (mut t4, _) = online(&b, "alice", "t4").await;
    signal(&a, "-CONT");
    assert_eq!(recv_close(&mut t1).await, close::SERVICE_RESTART);
    assert_eq!(recv_close(&mut t2).await, close::SERVICE_RESTART);
    expect_untouched(&mut t3).await;
    expect_untouched(&mut t4).await;
    let log = a.log();
    assert!(log.contains("fenced"), "{log}");
    // It joins again under a new id (logins there answer 70169 until then), and decides
    // again: a login there evicts the earliest (t3, on b).
    let joined = Instant::now();
    let _t5 = loop {
        let mut ws = tim_test_support::ws::connect(&a.ws_url()).await;
        send(&mut ws, &login("alice", "t5", &sig("alice"))).await;
        match recv(&mut ws).await {
            ServerFrame::LoginOk(_) => break ws,
            ServerFrame::Error(e) if e.code == 70169 => {
                assert!(
                    joined.elapsed() < Duration::from_secs(5),
                    "never joined again"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{other:?}"),
        }
    };
    eventually_within(
        "its stream read under the new id",
        Duration::from_secs(5),
        || node_id_now(&a) != old_id,
    )
    .await;
    assert_eq!(
        recv(&mut t3).await,
        ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        }
    );
    expect_untouched(&mut t4).await;
}

/// As deployed: three nodes behind haproxy. A `kill -9` ends the sockets on that node only;
/// their clients reconnect through the same balancer, land on a live node and resume; no
/// one is kicked anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_load_balancer_a_killed_nodes_clients_resume_on_the_others() {
    let redis = RedisServer::start();
    let mut nodes = [node(&redis), node(&redis), node(&redis)];
    let lb = Haproxy::start(&nodes.iter().map(TimdNode::addr).collect::<Vec<_>>());
    let mut clients = Vec::new();
    for n in 0..9 {
        let user = format!("u{n}");
        let mut ws = tim_test_support::ws::connect(&lb.ws_url()).await;
        send(&mut ws, &login(&user, "tab", &sig(&user))).await;
        match recv(&mut ws).await {
            ServerFrame::LoginOk(ok) => clients.push((user, ws, ok.ticket)),
            other => panic!("{user}: {other:?}"),
        }
    }
    nodes[0].kill9();
    let mut ended = Vec::new();
    for (user, ws, ticket) in &mut clients {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(None | Some(Err(_))) => ended.push((user.clone(), ticket.clone())),
            Ok(Some(Ok(m))) if m.is_close() => ended.push((user.clone(), ticket.clone())),
            Ok(other) => panic!("{user}: {other:?}"),
            Err(_) => expect_untouched(ws).await,
        }
    }
    println!(
        "{} of {} sessions were on the killed node",
        ended.len(),
        clients.len()
    );
    assert!(
        !ended.is_empty() && ended.len() < clients.len(),
        "round robin spread them"
    );
    let mut resumed = Vec::new();
    for (user, ticket) in ended {
        let mut ws = tim_test_support::ws::connect(&lb.ws_url()).await;
        send(&mut ws, &ClientFrame::Resume { seq: 2, ticket }).await;
        match recv(&mut ws).await {
            ServerFrame::ResumeOk { .. } => {}
            other => panic!("{user} did not resume: {other:?}"),
        }
        expect_untouched(&mut ws).await;
        resumed.push(ws);
    }
    let rest = Rest::new(nodes[1].addr(), APP, KEY);
    for (user, _, _) in &clients {
        assert_eq!(status(&rest, user).await, "Online", "{user}");
    }
}
