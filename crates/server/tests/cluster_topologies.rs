//! Cluster mode on the Redis topologies deployments run: real `timd` processes on a primary
//! with a replica watched by three Sentinels (`--redis redis+sentinel://…`). The primary is
//! killed under logged-in sessions: the nodes follow the Sentinels to the promoted replica,
//! and what they acknowledged before — a REST kick's revocation, a logout's dead ticket —
//! is still true after it (each waited for the replica, `WAIT`). And a Redis Cluster
//! (`--redis redis+cluster://…`, three primaries with a replica each): users on every shard,
//! kicks across nodes, settings changes, a slot moved between shards (`ASK`, `MOVED`), and
//! a shard's primary killed under sessions.
mod common;
mod rest_client;

use std::time::Duration;

use common::{expect_untouched, recv, send, sig, TimdNode, APP, KEY};
use rest_client::{Rest, KICK};
use serde_json::json;
use tim_proto::{ClientFrame, KickReason, ServerFrame};
use tim_test_support::{ClusterGroup, SentinelGroup};

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

const GET_SETTINGS: &str = "/v4/timd/get_login_settings";
const SET_SETTINGS: &str = "/v4/timd/set_login_settings";

/// The key of `user`'s hash: its shard is the user's.
fn user_key(user: &str) -> String {
    format!("tim:{{{APP}:{user}}}:u")
}

async fn expect_kicked(ws: &mut common::Ws, reason: KickReason) {
    assert_eq!(recv(ws).await, ServerFrame::Kicked { reason });
}

/// Three `timd` nodes on a Redis Cluster: one user per shard, each logged in on two nodes
/// and a third login on the third node kicking the earliest (a cross-node notice, written
/// by the deciding node after the script: the two-step path); a REST kick through a node
/// holding none of the user's sessions; a settings change applied now, seen by every node;
/// then a shard's primary killed (`kill -9`, its replica promoted) under logged-in
/// sessions: they stay, and logins on that shard kick across nodes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shards_the_users_and_survives_a_shard_failover() {
    let mut group = ClusterGroup::start();
    let nodes = [node(&group.url()), node(&group.url()), node(&group.url())];
    let [a, b, c] = &nodes;

    // One user per shard (and a second on the first, to stay untouched).
    let mut users: Vec<(String, u16)> = Vec::new();
    for n in 0..200 {
        let user = format!("user{n}");
        let shard = group.primary_of(&user_key(&user));
        if !users.iter().any(|(_, s)| *s == shard) {
            users.push((user, shard));
        }
        if users.len() == 3 {
            break;
        }
    }
    assert_eq!(users.len(), 3, "users on three shards");
    // The shard that fails is the one of `tim:nodes` (every node's round goes there): the
    // user on it last.
    let nodes_shard = group.primary_of("tim:nodes");
    users.sort_by_key(|(_, shard)| *shard == nodes_shard);
    let (victim_shard_user, victim_shard) = users[2].clone();
    let bystander = (0..500)
        .map(|n| format!("calm{n}"))
        .find(|u| group.primary_of(&user_key(u)) == victim_shard)
        .expect("a user on the shard that fails");

    // Each user: a1 on a, b1 on b (the Web limit is 2), then c1 on c kicks a1 across nodes.
    let mut on_b = Vec::new();
    let mut on_c = Vec::new();
    for (user, shard) in &users {
        let (mut first, _) = online(a, user, "a1").await;
        let (second, _) = online(b, user, "b1").await;
        let (third, _) = online(c, user, "c1").await;
        expect_kicked(&mut first, KickReason::MultipleAccount).await;
        println!("{user} (shard {shard}): kicked across nodes");
        on_b.push(second);
        on_c.push(third);
    }

    // A REST kick through a, which holds none of users[1]'s sessions: both go.
    let rest_a = Rest::new(a.addr(), APP, KEY);
    let kicked = rest_a.call(KICK, json!({"UserID": users[1].0})).await;
    assert_eq!(kicked.code(), 0, "{}", kicked.json);
    expect_kicked(&mut on_b[1], KickReason::RestApi).await;
    expect_kicked(&mut on_c[1], KickReason::RestApi).await;

    // Settings: one Web instance, applied now, through c: users[0]'s b1 (the earlier) goes;
    // every node answers the new settings.
    let set = Rest::new(c.addr(), APP, KEY)
        .call(SET_SETTINGS, json!({"WebInstances": 1, "ApplyNow": 1}))
        .await;
    assert_eq!(set.code(), 0, "{}", set.json);
    expect_kicked(&mut on_b[0], KickReason::MultipleAccount).await;
    expect_kicked(&mut on_b[2], KickReason::MultipleAccount).await;
    expect_untouched(&mut on_c[0]).await;
    for n in &nodes {
        let got = Rest::new(n.addr(), APP, KEY)
            .call(GET_SETTINGS, json!({}))
            .await;
        assert_eq!(got.code(), 0, "{}", got.json);
        assert_eq!(got.json["LoginSettings"]["WebInstances"], 1, "{}", got.json);
    }
    // Back to two, so the failover part can hold two sessions per user.
    let set = Rest::new(a.addr(), APP, KEY)
        .call(SET_SETTINGS, json!({"WebInstances": 2}))
        .await;
    assert_eq!(set.code(), 0, "{}", set.json);

    // users[0]'s slot moves to users[1]'s primary under its session c1 (on c). While its
    // keys are on the new primary but the slot not yet, a one-key read follows `ASK`
    // (account_check answers from the new primary); a script on several keys, some of which
    // do not exist yet, gets `TRYAGAIN` from Redis until the move ends: a login is then
    // answered 70169 (the SDK retries) unless it went through. Once the slot is moved, a
    // login and a REST kick through b (`MOVED`; its `WAIT` on the new shard) work, and
    // both sessions go.
    let moving = group.begin_moving_slot_of(&user_key(&users[0].0), users[1].1);
    assert_eq!(rest_a.status_of(&users[0].0).await, "Imported");
    let mut ws = tim_test_support::ws::connect(&a.ws_url()).await;
    send(&mut ws, &login(&users[0].0, "a1", &sig(&users[0].0))).await;
    let during = recv(&mut ws).await;
    group.finish_moving(moving);
    println!("a login while the slot moved: {during:?}");
    let mut moved = match during {
        ServerFrame::LoginOk(_) => ws,
        ServerFrame::Error(e) if e.code == 70169 => online(a, &users[0].0, "a1").await.0,
        other => panic!("a login while the slot moved: {other:?}"),
    };
    assert_eq!(group.primary_of(&user_key(&users[0].0)), users[1].1);
    let kicked = Rest::new(b.addr(), APP, KEY)
        .call(KICK, json!({"UserID": users[0].0}))
        .await;
    assert_eq!(kicked.code(), 0, "{}", kicked.json);
    expect_kicked(&mut moved, KickReason::RestApi).await;
    expect_kicked(&mut on_c[0], KickReason::RestApi).await;

    // The shard of users[2] (and of `tim:nodes`) loses its primary under sessions: users[2]'s c1 (on c) and the
    // bystander (on a) are online.
    let (mut calm, _) = online(a, &bystander, "x1").await;
    let old = group.primary_of(&user_key(&victim_shard_user));
    let new = group.fail_over_shard_of(&user_key(&victim_shard_user));
    println!("shard primary {old} killed; replica {new} promoted");
    // Every node saw the shard's run id change (its round reads every primary's) and
    // registered again what it holds, as after a Sentinel failover.
    for n in &nodes {
        tim_test_support::wait::eventually_within(
            "a node registered again after the shard failover",
            Duration::from_secs(15),
            || n.log().contains("registered again what this node holds"),
        )
        .await;
    }
    // The nodes kept their sessions through it (shorter than the lease).
    expect_untouched(&mut calm).await;
    expect_untouched(&mut on_c[2]).await;

    // users[2] logs in on a twice: a1 fits beside c1, a2 evicts the earliest, c1 (on c):
    // a cross-node kick decided on the promoted primary.
    match login_until_answered(a, &victim_shard_user, "a1", &sig(&victim_shard_user)).await {
        ServerFrame::LoginOk(_) => {}
        other => panic!("a login on the failed-over shard: {other:?}"),
    }
    match login_until_answered(a, &victim_shard_user, "a2", &sig(&victim_shard_user)).await {
        ServerFrame::LoginOk(_) => {}
        other => panic!("a second login on the failed-over shard: {other:?}"),
    }
    expect_kicked(&mut on_c[2], KickReason::MultipleAccount).await;
    expect_untouched(&mut calm).await;

    // The killed primary comes back as a replica: a REST kick on that shard (it waits for
    // a replica) is acknowledged and delivered on another node.
    group.heal();
    let kicked = Rest::new(b.addr(), APP, KEY)
        .call(KICK, json!({"UserID": bystander}))
        .await;
    assert_eq!(kicked.code(), 0, "{}", kicked.json);
    expect_kicked(&mut calm, KickReason::RestApi).await;
}
