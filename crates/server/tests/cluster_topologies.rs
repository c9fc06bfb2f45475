//! Cluster mode on the Redis topologies deployments run: real `timd` processes on a primary
//! with a replica watched by three Sentinels (`--redis redis+sentinel://…`). The primary is
//! killed under logged-in sessions: the nodes follow the Sentinels to the promoted replica,
//! and what they acknowledged before — a REST kick's revocation, a logout's dead ticket —
//! is still true after it (each waited for the replica, `WAIT`).
mod common;
mod rest_client;

use std::time::Duration;

use common::{expect_untouched, recv, send, sig, TimdNode, APP, KEY};
use rest_client::{Rest, KICK};
use serde_json::json;
use tim_proto::{ClientFrame, KickReason, ServerFrame};
use tim_test_support::SentinelGroup;

use common::nodes::{login_frame as login, online};

/// Longer than a failover (Sentinel's down-after 1 s, the election, the promotion): the
/// nodes keep their sessions through it instead of fencing themselves.
const LEASE_MS: u64 = 10_000;

fn node(url: &str) -> TimdNode {
    TimdNode::builder()
        .redis(url)
        .args(["--lease-ms", &LEASE_MS.to_string(), "--web-instances", "2"])
        .start()
}

/// Logs `user` in on `node` until it is admitted (during a failover the node answers 70169
/// and the SDK retries: so does this); the frame that finally answered.
async fn login_until_answered(
    node: &TimdNode,
    user: &str,
    instance: &str,
    usersig: &str,
) -> ServerFrame {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut ws = tim_test_support::ws::connect(&node.ws_url()).await;
        send(&mut ws, &login(user, instance, usersig)).await;
        let answer = recv(&mut ws).await;
        match &answer {
            ServerFrame::Error(e) if e.code == 70169 => {}
            _ => return answer,
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user}: still 70169 after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_keeps_what_was_acknowledged() {
    let mut group = SentinelGroup::start();
    let a = node(&group.url());
    let b = node(&group.url());
    let rest = Rest::new(b.addr(), APP, KEY);

    // Before: alice on a, bob on b; a UserSig of alice's kept; alice kicked (acknowledged);
    // carol logged out (acknowledged), her ticket kept.
    let old_alice_sig = sig("alice");
    let (mut alice, _) = online(&a, "alice", "a1").await;
    let (mut bob, _) = online(&b, "bob", "b1").await;
    // The kick's second must be over the UserSig's: the REST kick answers after it.
    assert_eq!(rest.call(KICK, json!({"UserID": "alice"})).await.code(), 0);
    assert_eq!(
        recv(&mut alice).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    let (mut carol, carol_ticket) = online(&a, "carol", "c1").await;
    send(&mut carol, &ClientFrame::Logout { seq: 2 }).await;
    assert!(matches!(
        recv(&mut carol).await,
        ServerFrame::LogoutOk { .. }
    ));

    let before = group.primary_port();
    let after = group.fail_over();
    println!("primary {before} killed; Sentinel promoted {after}");

    // After: the revocation holds on the new primary, on both nodes.
    for n in [&a, &b] {
        match login_until_answered(n, "alice", "a2", &old_alice_sig).await {
            ServerFrame::Error(e) => assert_eq!(e.code, 70001, "{e:?}"),
            other => panic!("a UserSig revoked before the failover logged in: {other:?}"),
        }
    }
    // A fresh one logs in: the nodes decide on the new primary.
    match login_until_answered(&a, "alice", "a3", &sig("alice")).await {
        ServerFrame::LoginOk(_) => {}
        other => panic!("a fresh UserSig after the failover: {other:?}"),
    }
    // The logged-out ticket stays dead.
    let mut ws = tim_test_support::ws::connect(&b.ws_url()).await;
    send(
        &mut ws,
        &ClientFrame::Resume {
            seq: 1,
            ticket: carol_ticket,
        },
    )
    .await;
    match recv(&mut ws).await {
        ServerFrame::ResumeOk { .. } => panic!("a logged-out ticket resumed after the failover"),
        other => println!("carol's dead ticket after the failover: {other:?}"),
    }
    // bob, never touched, is still online on his socket: the failover took less than the
    // lease, so his node kept its hold (no fence, no kick).
    expect_untouched(&mut bob).await;
}

/// `--redis-wait-replicas` asks more replicas than there are: a REST kick is not
/// acknowledged (70169: it might not survive a failover), and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_no_replica_confirms_is_not_acknowledged() {
    let group = SentinelGroup::start();
    let a = TimdNode::builder()
        .redis(&group.url())
        .args(["--redis-wait-replicas", "2"])
        .start();
    let rest = Rest::new(a.addr(), APP, KEY);
    let (_alice, _) = online(&a, "alice", "a1").await;
    let answer = rest.call(KICK, json!({"UserID": "alice"})).await;
    assert_eq!(answer.code(), 70169, "{}", answer.json);
}

/// A login that evicts someone is acknowledged only once a replica has it: with more
/// replicas asked than there are, alice's third Web login (limit 2) is answered 70169 (the
/// SDK retries), while logins that evict no one are not held back. The evicted instance on
/// this node was told (the primary has the eviction); the one that was refused holds no slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_login_no_replica_confirms_is_not_acknowledged() {
    let group = SentinelGroup::start();
    let a = TimdNode::builder()
        .redis(&group.url())
        .args(["--redis-wait-replicas", "2", "--web-instances", "2"])
        .start();
    let (mut first, _) = online(&a, "alice", "a1").await;
    let (mut second, _) = online(&a, "alice", "a2").await;
    let mut third = tim_test_support::ws::connect(&a.ws_url()).await;
    send(&mut third, &login("alice", "a3", &sig("alice"))).await;
    match recv(&mut third).await {
        ServerFrame::Error(e) => assert_eq!(e.code, 70169, "{e:?}"),
        other => panic!("an eviction no replica has was acknowledged: {other:?}"),
    }
    assert_eq!(
        recv(&mut first).await,
        ServerFrame::Kicked {
            reason: KickReason::MultipleAccount
        }
    );
    expect_untouched(&mut second).await;
}
