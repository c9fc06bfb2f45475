//! Cluster mode against the defects a review found (issue 20 §1), each replayed with real
//! `timd` processes on a real `redis-server`.
mod common;
mod rest_client;

use std::time::{Duration, Instant};

use common::{recv, send, sig, RedisServer, TimdNode, APP};
use futures_util::StreamExt;
use tim_proto::{close, ClientFrame, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

use common::nodes::{login_frame as login, node, online, LEASE_MS};

/// What a resume with `ticket` on `node` got: a frame, or the close code it got instead.
async fn resume(node: &TimdNode, ticket: &str) -> Result<ServerFrame, u16> {
    let mut ws = tim_test_support::ws::connect(&node.ws_url()).await;
    send(
        &mut ws,
        &ClientFrame::Resume {
            seq: 2,
            ticket: ticket.into(),
        },
    )
    .await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Ok(serde_json::from_str(&t).expect("a server frame"))
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(frame.map_or(0, |f| u16::from(f.code)))
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("resume: no answer: {other:?}"),
        }
    }
}

/// Redis killed, a logout: it is not acknowledged (the end is not durable), and once Redis
/// is back from its append-only file and the session's lease lapsed, its ticket does not
/// resume on another node (the node wrote the end as soon as Redis answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_redis_never_got_is_not_acknowledged_and_its_ticket_stays_dead() {
    let mut redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);
    let (mut ws, ticket) = online(&a, "alice", "t1").await;
    redis.kill();
    send(&mut ws, &ClientFrame::Logout { seq: 2 }).await;
    match recv(&mut ws).await {
        ServerFrame::Error(e) => {
            assert_eq!(e.seq, Some(2));
            assert_eq!(e.code, 70169, "{e:?}");
        }
        other => panic!("a logout Redis never got was answered {other:?}"),
    }
    tokio::task::block_in_place(|| redis.start_again());
    // The lease ran out long ago (the logout retried for 2 s on a 900 ms lease). Resumes
    // that would come back are asked to retry (1013) until every node had a round.
    let started = Instant::now();
    loop {
        match resume(&b, &ticket).await {
            Err(code) if code == close::TRY_AGAIN_LATER => {
                assert!(started.elapsed() < Duration::from_secs(20), "still 1013");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The node itself rejoining the cluster (it fenced itself while Redis was
            // down): "try again later" too.
            Ok(ServerFrame::Error(e)) if e.code == 70169 => {
                assert!(started.elapsed() < Duration::from_secs(20), "still 70169");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(ServerFrame::Error(e)) => {
                assert!(e.message.contains("session ended"), "{e:?}");
                break;
            }
            other => panic!("the logged-out ticket got {other:?}"),
        }
    }
    assert!(
        a.log().contains("logout recorded in Redis (late)"),
        "{}",
        a.log()
    );
}

/// How many times Redis ran `command` (from scripts too) since the last `CONFIG RESETSTAT`.
fn command_calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.command(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().parse().expect("a count")
        })
}

/// A user with a full tombstone table (64 ended sessions) does not cost Redis a full read
/// and sort of it on every login: the upkeep is amortised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_upkeep_is_amortised() {
    let redis = RedisServer::start();
    let a = TimdNode::builder()
        .redis(&redis.url())
        .args(["--login-rate-per-addr", "0", "--login-rate-per-user", "0"])
        .start();
    let mut ws = tim_test_support::ws::connect(&a.ws_url()).await;
    let usersig = sig("alice");
    // Each login on the same socket ends the one before: one tombstone each.
    let mut relogin = async |n: u32| {
        send(&mut ws, &login("alice", &format!("i{n}"), &usersig)).await;
        match recv(&mut ws).await {
            ServerFrame::LoginOk(_) => {}
            other => panic!("login {n}: {other:?}"),
        }
    };
    for n in 0..70 {
        relogin(n).await;
    }
    redis.command(&["CONFIG", "RESETSTAT"]);
    for n in 70..102 {
        relogin(n).await;
    }
    let reads = command_calls(&redis, "hgetall");
    println!("32 logins with a full tombstone table: {reads} full reads");
    assert!(
        reads <= 1,
        "{reads} full reads of the tombstones in 32 logins"
    );
}

/// A node whose clock is 5 s behind decides with the cluster's clock (Redis's): it takes
/// fresh user and admin UserSigs (not "from the future"), and the kick sent through it
/// revokes a UserSig issued 2 s before it on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_is_behind_decides_on_the_clusters_clock() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let behind = TimdNode::builder()
        .redis(&redis.url())
        .args(["--lease-ms", &LEASE_MS.to_string(), "--web-instances", "2"])
        .clock_offset("-5s")
        .start();
    let now = common::now();
    let old_sig = tim_usersig::generate(APP, common::KEY, "alice", now - 2, 3600);
    // A fresh UserSig logs in on the node that is behind.
    let (_ws, _) = online(&behind, "alice", "t1").await;
    // The kick goes through it (its admin UserSig is fresh too)...
    let rest = rest_client::Rest::new(behind.addr(), APP, common::KEY);
    let kicked = rest
        .call(rest_client::KICK, serde_json::json!({"UserID": "alice"}))
        .await;
    assert_eq!(kicked.code(), 0, "{}", kicked.json);
    // ...and the UserSig issued before it is refused on the other node.
    let mut ws = tim_test_support::ws::connect(&a.ws_url()).await;
    send(&mut ws, &login("alice", "t2", &old_sig)).await;
    match recv(&mut ws).await {
        ServerFrame::Error(e) => assert_eq!(e.code, 70001, "{e:?}"),
        other => panic!("a UserSig issued before the kick got {other:?}"),
    }
}

/// A Redis that may evict keys is refused at start, saying why, unless
/// `--allow-redis-eviction` accepts it.
#[tokio::test]
async fn a_redis_that_may_evict_keys_is_refused_unless_allowed() {
    use timd::cluster::{Cluster, ClusterMetrics};
    use timd::config::ClusterSettings;
    let redis = RedisServer::start();
    redis.command(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    let mut settings = ClusterSettings::new(redis.url());
    let refused = Cluster::connect(settings.clone(), ClusterMetrics::default())
        .await
        .err()
        .expect("volatile-lru refused");
    let why = refused.to_string();
    assert!(
        why.contains("maxmemory-policy is volatile-lru") && why.contains("--allow-redis-eviction"),
        "{why}"
    );
    settings.allow_eviction = true;
    assert!(
        Cluster::connect(settings.clone(), ClusterMetrics::default())
            .await
            .is_ok()
    );
    redis.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    settings.allow_eviction = false;
    assert!(Cluster::connect(settings, ClusterMetrics::default())
        .await
        .is_ok());
}

/// Redis loses everything (FLUSHALL): the session a renewal registers again has its account
/// back, so a REST kick of its user finds it, records the kick time and kicks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_registered_again_after_a_data_loss_has_its_account() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let rest = rest_client::Rest::new(a.addr(), APP, common::KEY);
    let (mut ws, _) = online(&a, "alice", "t1").await;
    redis.command(&["FLUSHALL"]);
    // The next renewal rounds register alice's session again.
    let started = Instant::now();
    loop {
        let status = rest
            .call(
                rest_client::ONLINE,
                serde_json::json!({"To_Account": ["alice"]}),
            )
            .await;
        if status.json["QueryResult"][0]["Status"] == "Online" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            status.json
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kicked = rest
        .call(rest_client::KICK, serde_json::json!({"UserID": "alice"}))
        .await;
    assert_eq!(kicked.code(), 0, "{}", kicked.json);
    assert!(matches!(recv(&mut ws).await, ServerFrame::Kicked { .. }));
    let key = format!("tim:{{{APP}:alice}}:u");
    assert_ne!(
        redis.command(&["HGET", &key, "kick"]),
        "",
        "the kick time is recorded"
    );
}

/// REST authenticates and rate-limits before it asks Redis anything: with Redis down, a
/// forged admin UserSig gets its own code (not 70169, no Redis call, no warning), and a call
/// over the app's rate gets 60011.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_refuses_bad_callers_without_asking_redis() {
    let mut redis = RedisServer::start();
    let a = TimdNode::builder()
        .redis(&redis.url())
        .args(["--rest-rate-limit", "1"])
        .start();
    redis.kill();
    let forged = rest_client::Rest::new(a.addr(), APP, "not-the-key-0123456789");
    let body = serde_json::json!({"UserID": "alice"});
    for _ in 0..5 {
        assert_eq!(
            forged.call(rest_client::KICK, body.clone()).await.code(),
            70009
        );
    }
    let admin = rest_client::Rest::new(a.addr(), APP, common::KEY);
    // Both at once: the one within the rate waits out Redis's timeout, so a second call
    // sent after it could find the bucket refilled.
    let (first, second) = tokio::join!(
        admin.call(rest_client::KICK, body.clone()),
        admin.call(rest_client::KICK, body)
    );
    let mut codes = [first.code(), second.code()];
    codes.sort_unstable();
    assert_eq!(
        codes,
        [60011, 70169],
        "one call within the rate asks Redis, the other is over it: {} {}",
        first.json,
        second.json
    );
    let log = a.log();
    assert_eq!(
        log.matches("REST call not decided").count(),
        1,
        "only the call within the rate reached Redis:\n{log}"
    );
}

/// `account_delete` of several users is one Redis transaction (MULTI/EXEC): all deleted, or
/// none (a connection lost before EXEC runs nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_deletion_is_one_transaction() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let rest = rest_client::Rest::new(a.addr(), APP, common::KEY);
    let users = ["carol", "dave", "erin"];
    let imported = rest
        .call(
            rest_client::MULTI_IMPORT,
            serde_json::json!({"Accounts": users}),
        )
        .await;
    assert_eq!(imported.code(), 0, "{}", imported.json);
    let (mut ws, _) = online(&a, "dave", "t1").await;
    redis.command(&["CONFIG", "RESETSTAT"]);
    let items: Vec<_> = users
        .iter()
        .chain(["ghost"].iter())
        .map(|u| serde_json::json!({"UserID": u}))
        .collect();
    let deleted = rest
        .call(
            rest_client::DELETE,
            serde_json::json!({"DeleteItem": items}),
        )
        .await;
    assert_eq!(deleted.code(), 0, "{}", deleted.json);
    let codes: Vec<u64> = deleted.json["ResultItem"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ResultCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [0, 0, 0, 70107]);
    assert!(matches!(recv(&mut ws).await, ServerFrame::Kicked { .. }));
    assert_eq!(command_calls(&redis, "exec"), 1, "one transaction");
    assert_eq!(command_calls(&redis, "multi"), 1);
    let checked = rest
        .call(
            rest_client::CHECK,
            serde_json::json!({"CheckItem": users.iter().map(|u| serde_json::json!({"UserID": u})).collect::<Vec<_>>()}),
        )
        .await;
    assert!(
        checked.json["ResultItem"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["AccountStatus"] == "NotImported"),
        "{}",
        checked.json
    );
}

/// A login whose script ran in Redis but whose answer came too late (past the node's 2 s
/// timeout: the user's login order held 1.5 million stale entries to sweep): the login got
/// 70169, and the slot Redis admitted for it — held by no socket — is released at the
/// node's next round, not left standing (a slot no longer lapses by itself while its node
/// lives; under the per-session leases it stood for a whole lease). A long lease, so that
/// the node does not fence itself while the scripts hold Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_answer_timed_out_leaves_no_slot_standing() {
    let redis = RedisServer::start();
    let a = TimdNode::builder()
        .redis(&redis.url())
        .args(["--lease-ms", "30000"])
        .start();
    let order = format!("tim:{{{APP}:alice}}:i");
    let slots = format!("tim:{{{APP}:alice}}:s");
    redis.command(&[
        "EVAL",
        "for i = 1, 1500000 do redis.call('ZADD', KEYS[1], i, 'x' .. i) end return 1",
        "1",
        &order,
    ]);
    let mut ws = tim_test_support::ws::connect(&a.ws_url()).await;
    send(&mut ws, &login("alice", "t1", &sig("alice"))).await;
    match recv(&mut ws).await {
        ServerFrame::Error(e) => assert_eq!(e.code, 70169, "{e:?}"),
        other => panic!("the login's answer did not time out: {other:?}"),
    }
    // Answered once the script is done: the slot it admitted, when it was taken, and when
    // a per-session lease would have freed it. (A round may have released it already, just
    // before this read: then the log below is what shows it was admitted and released.)
    let slot = tokio::task::block_in_place(|| redis.command(&["HGET", &slots, "t1"]));
    if let Some(at) = slot.split('|').nth(4) {
        let lease_end = 30_000 + at.parse::<u64>().unwrap();
        let redis_ms = |redis: &RedisServer| {
            let time = redis.command(&["TIME"]);
            let mut parts = time.lines();
            let secs: u64 = parts.next().unwrap().parse().unwrap();
            let micros: u64 = parts.next().unwrap().parse().unwrap();
            secs * 1000 + micros / 1000
        };
        loop {
            let now = redis_ms(&redis);
            if redis.command(&["HEXISTS", &slots, "t1"]) == "0" {
                assert!(now < lease_end, "the slot stood until its lease ran out");
                break;
            }
            assert!(now < lease_end + 10_000, "never released");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The node logs the release once Redis's answer is in (just after the test saw it).
    let logged = Instant::now();
    while !a
        .log()
        .contains("released a slot whose script's answer never came")
    {
        assert!(logged.elapsed() < Duration::from_secs(10), "{}", a.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
