//! Cluster mode (`--redis`): three nodes on one real Redis, every login-policy invariant
//! across nodes. Nodes run in this process (each its own `AppState`, node id, Redis
//! connections and listener); the kill -9 tests in `cluster_faults.rs` use the binary.
mod common;
mod rest_client;

use std::time::Duration;

use common::{
    expect_kicked, expect_untouched, recv, recv_close, send, sig, web, RedisServer, Server, Ws,
    APP, KEY,
};
use futures_util::StreamExt;
use rest_client::{Rest, CHECK, DELETE, IMPORT, KICK, ONLINE};
use serde_json::json;
use tim_proto::{close, ClientFrame, KickReason, Login, Platform, ServerFrame};
use tim_test_support::wait::eventually_within;
use timd::config::ClusterSettings;
use timd::policy::{LoginPolicy, LoginSettings};
use timd::{AppState, Config};
use tokio::sync::oneshot;

/// Short leases so the bounds are quick to test: renewals every 300 ms.
const LEASE_MS: u32 = 900;

struct Node {
    addr: std::net::SocketAddr,
    state: AppState,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Node {
    async fn start(redis: &RedisServer, login: LoginSettings) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(APP, KEY);
        config.data_dir = dir.path().join("data");
        config.login = login;
        roomy(&mut config);
        config.cluster = Some(ClusterSettings {
            redis_url: redis.url(),
            lease_ms: LEASE_MS,
            allow_eviction: false,
            wait_replicas: None,
        });
        let state = AppState::open(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(timd::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Node {
            addr,
            state,
            _dir: dir,
            stop: Some(stop),
        }
    }

    async fn connect(&self) -> Ws {
        tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .unwrap()
            .0
    }

    /// A socket logged in as `user`/`instance` on `platform`; returns it and its ticket.
    async fn online(&self, user: &str, instance: &str, platform: Platform) -> (Ws, String) {
        let mut ws = self.connect().await;
        send(&mut ws, &login_on(1, user, instance, platform)).await;
        match recv(&mut ws).await {
            ServerFrame::LoginOk(ok) => (ws, ok.ticket),
            other => panic!("expected login_ok for {instance}, got {other:?}"),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Every socket here comes from 127.0.0.1: no per-address limits in the way.
fn roomy(config: &mut Config) {
    config.limits.max_connections_per_addr = 100_000;
    config.limits.connection_rate_per_addr = 100_000;
    config.limits.login_rate_per_addr = 100_000;
}

fn login_on(seq: u32, user: &str, instance: &str, platform: Platform) -> ClientFrame {
    ClientFrame::Login(Login {
        seq,
        sdkappid: APP,
        user: user.into(),
        usersig: sig(user),
        platform,
        instance: instance.into(),
    })
}

async fn three_nodes(redis: &RedisServer, login: LoginSettings) -> [Node; 3] {
    [
        Node::start(redis, login).await,
        Node::start(redis, login).await,
        Node::start(redis, login).await,
    ]
}

#[tokio::test]
async fn n_plus_one_across_nodes_kicks_exactly_the_earliest() {
    let redis = RedisServer::start();
    let [a, b, c] = three_nodes(&redis, web(2)).await;
    let (mut t1, _) = a.online("alice", "t1", Platform::Web).await;
    let (mut t2, _) = b.online("alice", "t2", Platform::Web).await;
    let (mut t3, _) = c.online("alice", "t3", Platform::Web).await;
    expect_kicked(&mut t1, KickReason::MultipleAccount).await;
    expect_untouched(&mut t2).await;
    expect_untouched(&mut t3).await;
    // And again: t2 is now the earliest.
    let (mut t4, _) = a.online("alice", "t4", Platform::Web).await;
    expect_kicked(&mut t2, KickReason::MultipleAccount).await;
    expect_untouched(&mut t3).await;
    expect_untouched(&mut t4).await;
    assert_eq!(a.state.backend().cluster().unwrap().held().len(), 1);
}

/// What became of one instance: kicked (and why), or still online. A kick expected is
/// waited for as long as any frame (it may still be on its way from another node); one not
/// expected is looked for during 300 ms (and then the socket must answer a ping).
async fn outcome(ws: &mut Ws, kick_expected: bool) -> Option<KickReason> {
    let wait = if kick_expected {
        tim_test_support::WAIT
    } else {
        Duration::from_millis(300)
    };
    match tokio::time::timeout(wait, recv(ws)).await {
        Ok(ServerFrame::Kicked { reason }) => {
            assert_eq!(recv_close(ws).await, close::KICKED);
            Some(reason)
        }
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => {
            expect_untouched(ws).await;
            None
        }
    }
}

/// The instances in `user`'s slot hash, with their login order (the fencing counter).
fn slots(redis: &RedisServer, user: &str) -> Vec<(String, u64)> {
    let key = format!("tim:{{{APP}:{user}}}:s");
    let out = redis.command(&["HGETALL", &key]);
    let lines: Vec<&str> = out.lines().collect();
    let mut slots: Vec<(String, u64)> = lines
        .chunks(2)
        .filter(|kv| kv.len() == 2)
        .map(|kv| {
            let since = kv[1].split('|').next().unwrap().parse().unwrap();
            (kv[0].to_owned(), since)
        })
        .collect();
    slots.sort_by_key(|(_, since)| *since);
    slots
}

/// A login storm for one user from all three nodes at once: exactly the limit survive, they
/// are the latest in the login order, and every other socket got its `kicked` frame.
#[tokio::test]
async fn a_login_storm_from_all_nodes_leaves_exactly_the_latest_n() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis, web(3)).await;
    let logins = (0..30).map(|i| {
        let node = &nodes[i % 3];
        async move {
            let (ws, _) = node.online("storm", &format!("s{i}"), Platform::Web).await;
            (format!("s{i}"), ws)
        }
    });
    let mut sockets = futures_util::future::join_all(logins).await;
    // Every login was decided when answered: Redis holds the survivors now.
    let held_now: Vec<String> = slots(&redis, "storm").into_iter().map(|(i, _)| i).collect();
    let mut survivors = Vec::new();
    for (instance, ws) in &mut sockets {
        match outcome(ws, !held_now.contains(instance)).await {
            None => survivors.push(instance.clone()),
            Some(reason) => assert_eq!(reason, KickReason::MultipleAccount, "{instance}"),
        }
    }
    survivors.sort();
    let slots = slots(&redis, "storm");
    let mut held: Vec<String> = slots.iter().map(|(i, _)| i.clone()).collect();
    held.sort();
    assert_eq!(survivors.len(), 3, "survivors {survivors:?}");
    assert_eq!(held, survivors, "Redis holds exactly the survivors");
    // The latest: every kicked instance's tombstone predates the earliest survivor.
    let earliest_kept = slots[0].1;
    let tombs = redis.command(&["HGETALL", &format!("tim:{{{APP}:storm}}:t")]);
    let tombs: Vec<&str> = tombs.lines().collect();
    assert_eq!(tombs.len(), 2 * 27, "{tombs:?}");
    for kv in tombs.chunks(2) {
        let since: u64 = kv[1].split('|').next().unwrap().parse().unwrap();
        assert!(
            since < earliest_kept,
            "{} ({since}) outlived {earliest_kept}",
            kv[0]
        );
    }
    let held_total: usize = nodes
        .iter()
        .map(|n| n.state.backend().cluster().unwrap().held().len())
        .sum();
    assert_eq!(held_total, 3);
}

const PLATFORMS: [Platform; 5] = [
    Platform::Web,
    Platform::Android,
    Platform::IPhone,
    Platform::Windows,
    Platform::Mac,
];

/// What each login of `sequence` came to on `connect(i)` (the i-th login's server);
/// `expected` (the single process's outcomes) says which kicks to wait for.
async fn play<F, Fut>(
    user: &str,
    sequence: &[Platform],
    connect: F,
    expected: Option<&[Option<KickReason>]>,
) -> Vec<Option<KickReason>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Ws>,
{
    let mut sockets = Vec::new();
    for (i, platform) in sequence.iter().enumerate() {
        let mut ws = connect(i).await;
        send(&mut ws, &login_on(1, user, &format!("i{i}"), *platform)).await;
        match recv(&mut ws).await {
            ServerFrame::LoginOk(_) => {}
            other => panic!("{user} login {i} on {platform:?}: {other:?}"),
        }
        sockets.push(ws);
    }
    let mut outcomes = Vec::new();
    for (i, ws) in sockets.iter_mut().enumerate() {
        let kick_expected = expected.is_some_and(|e| e.get(i).is_some_and(Option::is_some));
        outcomes.push(outcome(ws, kick_expected).await);
    }
    outcomes
}

/// Every policy, every sequence of three logins over five platforms, each login on another
/// node: the cluster kicks exactly whom (and why) the single-process server kicks.
#[tokio::test]
async fn every_policy_and_platform_sequence_decides_as_one_process_does() {
    for policy in [
        LoginPolicy::Single,
        LoginPolicy::Dual,
        LoginPolicy::Triple,
        LoginPolicy::All,
    ] {
        let settings = LoginSettings {
            web_instances: 2,
            platform_instances: 1,
            policy,
        };
        // The app's settings live in Redis: each policy gets a Redis of its own (the previous
        // policy's nodes, still shutting down, would restore theirs into a flushed one: the
        // highest version wins).
        let redis = RedisServer::start();
        let nodes = three_nodes(&redis, settings).await;
        let embedded = Server::start(|c| {
            c.login = settings;
            roomy(c);
        })
        .await;
        let mut sequences = Vec::new();
        for a in PLATFORMS {
            for b in PLATFORMS {
                for c in PLATFORMS {
                    sequences.push([a, b, c]);
                }
            }
        }
        let runs = sequences.iter().enumerate().map(|(n, seq)| {
            let (nodes, embedded) = (&nodes, &embedded);
            async move {
                let user = format!("{policy:?}_{n}");
                let expected = play(&user, seq, |_| embedded.connect(), None).await;
                let got = play(&user, seq, |i| nodes[i % 3].connect(), Some(&expected)).await;
                (seq, expected, got)
            }
        });
        let results = futures_util::stream::iter(runs)
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        let mut kicks = 0;
        for (seq, expected, got) in results {
            assert_eq!(got, expected, "{policy:?} {seq:?}");
            kicks += expected.iter().flatten().count();
        }
        assert!(kicks > 0, "{policy:?}: the sequences exercise kicks");
    }
}

/// A REST kick on one node kicks the user's sockets on every node, refuses its earlier
/// UserSigs on every node (also on a node started afterwards), and a new UserSig works.
#[tokio::test]
async fn a_rest_kick_on_one_node_kicks_everywhere_and_revokes_everywhere() {
    let redis = RedisServer::start();
    let settings = LoginSettings {
        web_instances: 3,
        platform_instances: 1,
        policy: LoginPolicy::All,
    };
    let [a, b, c] = three_nodes(&redis, settings).await;
    let old = tim_usersig::generate(APP, KEY, "alice", common::now() - 30, 3600);
    let mut sockets = Vec::new();
    for (node, platform) in [
        (&a, Platform::Web),
        (&b, Platform::Web),
        (&c, Platform::Mac),
    ] {
        let mut ws = node.connect().await;
        send(&mut ws, &login_with(&old, "alice", platform)).await;
        assert!(matches!(recv(&mut ws).await, ServerFrame::LoginOk(_)));
        sockets.push(ws);
    }
    let (mut bob, _) = b.online("bob", "b1", Platform::Web).await;
    let answer = Rest::new(a.addr, APP, KEY)
        .call(KICK, json!({"UserID": "alice"}))
        .await;
    assert_eq!(answer.code(), 0, "{}", answer.json);
    for ws in &mut sockets {
        expect_kicked(ws, KickReason::RestApi).await;
    }
    expect_untouched(&mut bob).await;
    let d = Node::start(&redis, settings).await;
    for node in [&a, &b, &c, &d] {
        assert_eq!(login_code(node, &old, "alice").await, Some(70001));
        let fresh = tim_usersig::generate(APP, KEY, "alice", common::now(), 3600);
        assert_eq!(login_code(node, &fresh, "alice").await, None);
    }
    // Kicking an unknown account is 70107 from any node.
    for node in [&b, &c] {
        let answer = Rest::new(node.addr, APP, KEY)
            .call(KICK, json!({"UserID": "nobody"}))
            .await;
        assert_eq!(answer.code(), 70107, "{}", answer.json);
    }
}

fn login_with(usersig: &str, user: &str, platform: Platform) -> ClientFrame {
    ClientFrame::Login(Login {
        seq: 1,
        sdkappid: APP,
        user: user.into(),
        usersig: usersig.into(),
        platform,
        instance: format!("{user}-{}", rand_instance()),
    })
}

fn rand_instance() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Logs in on a new socket (closed after): the error code, or None when it worked.
async fn login_code(node: &Node, usersig: &str, user: &str) -> Option<u32> {
    let mut ws = node.connect().await;
    send(&mut ws, &login_with(usersig, user, Platform::Web)).await;
    match recv(&mut ws).await {
        ServerFrame::LoginOk(_) => None,
        ServerFrame::Error(e) => Some(e.code),
        other => panic!("unexpected {other:?}"),
    }
}

/// The admin REST API answers the same from every node: accounts imported on one are
/// checked on another, online status spans nodes, a delete on one kicks on the others.
#[tokio::test]
async fn rest_answers_the_same_from_every_node() {
    let redis = RedisServer::start();
    let [a, b, c] = three_nodes(&redis, web(2)).await;
    let (ra, rb, rc) = (
        Rest::new(a.addr, APP, KEY),
        Rest::new(b.addr, APP, KEY),
        Rest::new(c.addr, APP, KEY),
    );
    assert_eq!(ra.call(IMPORT, json!({"UserID": "carol"})).await.code(), 0);
    let (mut alice, _) = b.online("alice", "t1", Platform::Web).await;
    let check =
        json!({"CheckItem": [{"UserID": "carol"}, {"UserID": "alice"}, {"UserID": "nobody"}]});
    for rest in [&ra, &rb, &rc] {
        let answer = rest.call(CHECK, check.clone()).await;
        let statuses: Vec<&str> = answer.json["ResultItem"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["AccountStatus"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            ["Imported", "Imported", "NotImported"],
            "{}",
            answer.json
        );
        let online = rest
            .call(ONLINE, json!({"To_Account": ["alice", "carol"]}))
            .await;
        let states: Vec<&str> = online.json["QueryResult"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Status"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["Online", "Offline"], "{}", online.json);
    }
    let answer = rc
        .call(DELETE, json!({"DeleteItem": [{"UserID": "alice"}]}))
        .await;
    assert_eq!(answer.code(), 0, "{}", answer.json);
    expect_kicked(&mut alice, KickReason::RestApi).await;
    for rest in [&ra, &rb] {
        let answer = rest
            .call(CHECK, json!({"CheckItem": [{"UserID": "alice"}]}))
            .await;
        assert_eq!(answer.json["ResultItem"][0]["AccountStatus"], "NotImported");
    }
}

/// Waits until `node` holds `user`'s `instance` without a socket.
async fn away_on(node: &Node, user: &str, instance: &str) {
    eventually_within("away", Duration::from_secs(3), || {
        node.state
            .backend()
            .cluster()
            .unwrap()
            .held()
            .by_user()
            .iter()
            .filter(|((_, u), _)| u == user)
            .flat_map(|(_, held)| held.iter())
            .any(|h| h.info.instance == instance && !h.attached)
    })
    .await;
}

/// A socket on `node` resumed with `ticket`, retrying while the answer is "try again later"
/// (1013: Redis just restarted).
async fn resume_on(node: &Node, ticket: &str) -> Ws {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut ws = node.connect().await;
        send(&mut ws, &resume(ticket)).await;
        match recv(&mut ws).await {
            ServerFrame::ResumeOk { .. } => return ws,
            ServerFrame::Error(e) if e.code == 70169 => {
                assert!(tokio::time::Instant::now() < deadline, "never resumed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("expected resume_ok, got {other:?}"),
        }
    }
}

fn resume(ticket: &str) -> ClientFrame {
    ClientFrame::Resume {
        seq: 2,
        ticket: ticket.into(),
    }
}

/// A resume on another node gets its own slot back and kicks no one; the slot keeps its place
/// in the login order (the next login evicts it first).
#[tokio::test]
async fn a_resume_on_another_node_takes_its_own_slot_back_and_kicks_no_one() {
    let redis = RedisServer::start();
    let [a, b, c] = three_nodes(&redis, web(2)).await;
    let (t1, ticket) = a.online("alice", "t1", Platform::Web).await;
    let (mut t2, _) = b.online("alice", "t2", Platform::Web).await;
    drop(t1);
    away_on(&a, "alice", "t1").await;
    let mut t1 = c.connect().await;
    send(&mut t1, &resume(&ticket)).await;
    assert!(matches!(recv(&mut t1).await, ServerFrame::ResumeOk { .. }));
    expect_untouched(&mut t2).await;
    eventually_within("node a let go", Duration::from_secs(3), || {
        a.state.backend().cluster().unwrap().held().is_empty()
    })
    .await;
    assert_eq!(slots(&redis, "alice").len(), 2);
    let (mut t3, _) = b.online("alice", "t3", Platform::Web).await;
    expect_kicked(&mut t1, KickReason::MultipleAccount).await;
    expect_untouched(&mut t2).await;
    expect_untouched(&mut t3).await;
}

/// An instance kicked while it was away learns it on whichever node it comes back to, and
/// never takes the slot back.
#[tokio::test]
async fn kicked_while_away_learns_it_on_another_node() {
    let redis = RedisServer::start();
    let [a, b, c] = three_nodes(&redis, web(2)).await;
    let (t1, ticket) = a.online("alice", "t1", Platform::Web).await;
    drop(t1);
    away_on(&a, "alice", "t1").await;
    let (mut t2, _) = b.online("alice", "t2", Platform::Web).await;
    let (mut t3, _) = c.online("alice", "t3", Platform::Web).await;
    for node in [&b, &a] {
        let mut again = node.connect().await;
        send(&mut again, &resume(&ticket)).await;
        expect_kicked(&mut again, KickReason::MultipleAccount).await;
    }
    expect_untouched(&mut t2).await;
    expect_untouched(&mut t3).await;
    let held: Vec<String> = slots(&redis, "alice").into_iter().map(|(i, _)| i).collect();
    assert_eq!(held, ["t2", "t3"]);
}

/// Every command Redis ran (scripts' own calls too) since the last `CONFIG RESETSTAT`.
fn redis_calls(redis: &RedisServer) -> u64 {
    redis
        .command(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| l.split_once(":calls="))
        .map(|(_, rest)| rest.split(',').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Idle sessions cost Redis nothing: a node holding 2,000 idle sessions sends Redis as many
/// commands per round as one holding 20 (its lease, its view, the settings: a constant),
/// not one script per session or user as per-session leases did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_cost_redis_no_commands() {
    let redis = RedisServer::start();
    let a = Node::start(&redis, web(1)).await;
    let cluster = a.state.backend().cluster().unwrap();
    let mut sockets = Vec::new();
    let mut per_round = Vec::new();
    for held in [20usize, 2000] {
        while sockets.len() < held {
            let from = sockets.len();
            let batch = futures_util::future::join_all((from..(from + 100).min(held)).map(|n| {
                let a = &a;
                async move { a.online(&format!("idle{n}"), "t", Platform::Web).await.0 }
            }))
            .await;
            sockets.extend(batch);
        }
        redis.command(&["CONFIG", "RESETSTAT"]);
        let r0 = cluster.metrics().renewals_ok.get();
        eventually_within("three node rounds", Duration::from_secs(10), || {
            cluster.metrics().renewals_ok.get() >= r0 + 3
        })
        .await;
        let calls = redis_calls(&redis);
        let rounds = cluster.metrics().renewals_ok.get() - r0;
        let rate = calls as f64 / rounds as f64;
        println!(
            "{held} idle sessions: {calls} Redis commands in {rounds} rounds: {rate:.1} per round"
        );
        per_round.push(rate);
    }
    assert!(
        per_round[1] <= per_round[0] * 1.5 + 3.0,
        "commands per round grow with idle sessions: {per_round:?}"
    );
    assert!(per_round[1] < 50.0, "{per_round:?}");
    assert_eq!(cluster.held().len(), 2000);
    // With nothing renewed per session, an online user's keys must not expire at all.
    for key in ["i", "s"] {
        let ttl = redis.command(&["PTTL", &format!("tim:{{{APP}:idle0}}:{key}")]);
        assert_eq!(ttl, "-1", "an online user's :{key} key expires");
    }
}

/// Calls of one Redis command since the last `CONFIG RESETSTAT`.
fn calls_of(redis: &RedisServer, command: &str) -> u64 {
    redis
        .command(&["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// The two-step path in a clean run (docs/cluster.md): each login adds its user to the
/// node's index first (one `SADD`), and each cross-node notice is written once, by the
/// deciding node after its script (one `XADD`, its outbox entry then removed): no duplicate
/// without a failure, nothing left in the outboxes. Prints what it costs per login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cross_node_notice_is_written_once_by_the_deciding_node() {
    const USERS: usize = 50;
    let redis = RedisServer::start();
    let [a, b, _c] = three_nodes(&redis, web(1)).await;
    let mut first = Vec::new();
    for n in 0..USERS {
        first.push(a.online(&format!("v{n}"), "t1", Platform::Web).await.0);
    }
    redis.command(&["CONFIG", "RESETSTAT"]);
    let mut second = Vec::new();
    for n in 0..USERS {
        second.push(b.online(&format!("v{n}"), "t2", Platform::Web).await.0);
    }
    for ws in &mut first {
        expect_kicked(ws, KickReason::MultipleAccount).await;
    }
    let (sadd, xadd, evalsha) = (
        calls_of(&redis, "sadd"),
        calls_of(&redis, "xadd"),
        calls_of(&redis, "evalsha"),
    );
    println!(
        "{USERS} logins each kicking on another node: {sadd} SADD, {xadd} XADD, {evalsha} \
         EVALSHA (node rounds included), {} HDEL, {} SREM",
        calls_of(&redis, "hdel"),
        calls_of(&redis, "srem")
    );
    assert_eq!(sadd, USERS as u64, "one index addition per login");
    assert_eq!(xadd, USERS as u64, "each notice written once");
    for n in 0..USERS {
        let outbox = format!("tim:{{{APP}:v{n}}}:o");
        assert_eq!(redis.command(&["EXISTS", &outbox]), "0", "{outbox} left");
    }
    for ws in &mut second {
        expect_untouched(ws).await;
    }
}

/// A kick for a session on another node is an entry of that node's stream, written by the
/// deciding node right after its script: with the node's stream connection killed just before, the kick
/// still lands, read from the node's cursor once it reconnects (not repaired by polling
/// every session: nothing polls).
#[tokio::test]
async fn a_kick_survives_the_node_stream_connection_being_killed() {
    let redis = RedisServer::start();
    let [a, b, _c] = three_nodes(&redis, web(1)).await;
    let (mut t1, _) = a.online("alice", "t1", Platform::Web).await;
    let cluster = a.state.backend().cluster().unwrap();
    let notices = cluster.metrics().channel_notices.get();
    let reader = format!("tim-stream-{}", cluster.node());
    let id_of = |name: &str| {
        redis
            .command(&["CLIENT", "LIST"])
            .lines()
            .find(|l| l.contains(&format!(" name={name} ")))
            .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned)
    };
    eventually_within(
        "the stream reader connected",
        Duration::from_secs(5),
        || id_of(&reader).is_some(),
    )
    .await;
    let first = id_of(&reader).unwrap();
    assert_eq!(redis.command(&["CLIENT", "KILL", "ID", &first]), "1");
    let (_t2, _) = b.online("alice", "t2", Platform::Web).await;
    match tokio::time::timeout(Duration::from_secs(10), recv(&mut t1)).await {
        Ok(ServerFrame::Kicked { reason }) => assert_eq!(reason, KickReason::MultipleAccount),
        other => panic!("no kick: {other:?}"),
    }
    assert_eq!(
        cluster.metrics().channel_notices.get(),
        notices + 1,
        "read from the stream"
    );
    let second = id_of(&reader).expect("the reader connected again");
    assert_ne!(first, second, "the kill took effect");
    // Consumed entries are trimmed at the node's next round.
    let stream = format!("tim:node:{}:k", cluster.node());
    eventually_within("the stream trimmed", Duration::from_secs(5), || {
        redis.command(&["XLEN", &stream]) == "0"
    })
    .await;
}

/// Redis's clock (ms).
fn redis_ms(redis: &RedisServer) -> u64 {
    let time = redis.command(&["TIME"]);
    let mut parts = time.lines().map(|l| l.trim().parse::<u64>().unwrap());
    let (secs, micros) = (parts.next().unwrap(), parts.next().unwrap());
    secs * 1000 + micros / 1000
}

/// Leaves in Redis what a node that decided `user`'s `instance` must be kicked (step 1 of
/// the two-step path: slot dropped, the notice in the user's outbox, decided `age_ms` ago)
/// and then died before writing the notice to the victim's node stream (step 2).
fn decided_but_not_delivered(redis: &RedisServer, user: &str, instance: &str, age_ms: u64) {
    let tag = format!("tim:{{{APP}:{user}}}");
    let slot = redis.command(&["HGET", &format!("{tag}:s"), instance]);
    let f: Vec<&str> = slot.split('|').collect();
    let (node, session) = (f[2], f[3]);
    redis.command(&["ZREM", &format!("{tag}:i"), instance]);
    redis.command(&["HDEL", &format!("{tag}:s"), instance]);
    let write = json!([
        "XADD",
        format!("tim:node:{node}:k"),
        "*",
        "n",
        format!("K|{session}|multipleAccount")
    ])
    .to_string();
    let at = (redis_ms(redis) - age_ms).to_string();
    assert_eq!(
        redis.command(&["HSET", &format!("{tag}:o"), &write, &at]),
        "1"
    );
}

/// The two-step path (docs/cluster.md): a cross-node notice a deciding node left in the
/// user's outbox and never wrote (it died between its script and the `XADD`) still reaches
/// the victim — handed back to the reaper of the dead node (which had the user in its
/// index), or to the next node that runs a script on the user once it is 5 s old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_its_deciding_node_never_wrote_is_delivered_by_another() {
    let redis = RedisServer::start();
    let [a, b, _c] = three_nodes(&redis, web(2)).await;

    // The reaper: a dead node "dead0" decided alice's t1 kick just now (user in its index,
    // its lease long over); a live node reaps it and writes the notice.
    let (mut alice, _) = a.online("alice", "t1", Platform::Web).await;
    decided_but_not_delivered(&redis, "alice", "t1", 0);
    redis.command(&["SADD", "tim:node:dead0:users", &format!("{APP}:alice")]);
    redis.command(&["ZADD", "tim:nodes", "1", "dead0"]);
    match tokio::time::timeout(Duration::from_secs(10), recv(&mut alice)).await {
        Ok(ServerFrame::Kicked { reason }) => assert_eq!(reason, KickReason::MultipleAccount),
        other => panic!("the dead node's notice was not delivered: {other:?}"),
    }
    let outbox = format!("tim:{{{APP}:alice}}:o");
    eventually_within("the outbox emptied", Duration::from_secs(5), || {
        redis.command(&["HLEN", &outbox]) == "0"
    })
    .await;

    // The next script: bob's t1 kick was decided 6 s ago by a node that is gone; bob's next
    // login (on b) hands the notice back to b, which writes it to a's stream.
    let (mut bob, _) = a.online("bob", "t1", Platform::Web).await;
    decided_but_not_delivered(&redis, "bob", "t1", 6_000);
    let (mut bob2, _) = b.online("bob", "t2", Platform::Web).await;
    match tokio::time::timeout(Duration::from_secs(5), recv(&mut bob)).await {
        Ok(ServerFrame::Kicked { reason }) => assert_eq!(reason, KickReason::MultipleAccount),
        other => panic!("the notice was not handed back: {other:?}"),
    }
    assert_eq!(
        redis.command(&["HLEN", &format!("tim:{{{APP}:bob}}:o")]),
        "0"
    );
    expect_untouched(&mut bob2).await;
}

/// Redis down: logins and resumes get the documented retryable answers; connected
/// sessions stay up for the node lease, then their node fences itself (it cannot renew, so
/// others may treat its slots as free once Redis is back) and closes them so their clients
/// resume. Redis back with its data (AOF): tickets resume, decisions go on. Redis emptied
/// (FLUSHALL): the nodes register what they hold again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_restarted_and_emptied() {
    let mut redis = RedisServer::start();
    let [a, b, c] = three_nodes(&redis, web(1)).await;
    let (mut t1, alice_ticket) = a.online("alice", "t1", Platform::Web).await;
    let (away, ticket) = b.online("carol", "c1", Platform::Web).await;
    drop(away);
    away_on(&b, "carol", "c1").await;
    let fenced = || {
        [&a, &b, &c]
            .iter()
            .map(|n| n.state.backend().cluster().unwrap().metrics().fenced.get())
            .sum::<u64>()
    };
    redis.stop();
    let mut ws = c.connect().await;
    send(&mut ws, &login_on(1, "dave", "d1", Platform::Web)).await;
    match recv(&mut ws).await {
        ServerFrame::Error(e) => assert_eq!(e.code, 70169, "{e:?}"),
        other => panic!("expected 70169, got {other:?}"),
    }
    let mut ws = a.connect().await;
    send(&mut ws, &resume(&ticket)).await;
    // 70169 in a frame (a WebKitGTK page sees no 1013), then the close.
    match recv(&mut ws).await {
        ServerFrame::Error(e) => assert_eq!((e.seq, e.code), (Some(2), 70169), "{e:?}"),
        other => panic!("expected 70169, got {other:?}"),
    }
    assert_eq!(recv_close(&mut ws).await, close::TRY_AGAIN_LATER);
    let answer = Rest::new(b.addr, APP, KEY)
        .call(KICK, json!({"UserID": "alice"}))
        .await;
    assert_eq!(answer.code(), 70169, "{}", answer.json);
    // Past the node lease without Redis: fenced, the session closed as a restart closes it.
    assert_eq!(recv_close(&mut t1).await, close::SERVICE_RESTART);
    eventually_within("every node fenced itself", Duration::from_secs(5), || {
        fenced() >= 3
    })
    .await;

    redis.start_again();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut ws = c.connect().await;
        send(&mut ws, &login_on(1, "dave", "d1", Platform::Web)).await;
        match recv(&mut ws).await {
            ServerFrame::LoginOk(_) => break,
            ServerFrame::Error(e) if e.code == 70169 => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "Redis never came back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    // What Redis persisted is still there: alice's and carol's tickets resume (on any node;
    // right after Redis's restart a resume without a live slot waits a lease: 1013).
    let mut t1 = resume_on(&a, &alice_ticket).await;
    let (mut t2, _) = b.online("alice", "t2", Platform::Web).await;
    expect_kicked(&mut t1, KickReason::MultipleAccount).await;
    let mut c1 = resume_on(&c, &ticket).await;

    // Data loss: the next renewal round registers every held session again.
    let again = || {
        [&a, &b, &c]
            .iter()
            .map(|n| {
                n.state
                    .backend()
                    .cluster()
                    .unwrap()
                    .metrics()
                    .registered_again
                    .get()
            })
            .sum::<u64>()
    };
    let before = again();
    assert_eq!(redis.command(&["FLUSHALL"]), "OK");
    eventually_within("registered again", Duration::from_secs(3), || {
        again() >= before + 3
    })
    .await;
    let (_t3, _) = a.online("alice", "t3", Platform::Web).await;
    expect_kicked(&mut t2, KickReason::MultipleAccount).await;
    expect_untouched(&mut c1).await;
}
