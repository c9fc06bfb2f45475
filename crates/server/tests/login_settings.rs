//! Login settings changed at run time: obeyed at once by every node, kept across restarts of
//! any node or of the whole cluster, never silently undone by a restart's flags; and a
//! data directory of the single-app release upgraded in place with nothing lost.

mod common;
mod rest_client;

use common::{expect_kicked, login_ok, recv_error, send, web, RedisServer, Server, TimdNode};
use common::{APP, KEY};
use rest_client::{Rest, CHECK};
use serde_json::json;
use tim_proto::KickReason;
use timd::config::ClusterSettings;
use timd::policy::LoginSettings;
use timd::Store;

const GET_SETTINGS: &str = "/v4/timd/get_login_settings";
const SET_SETTINGS: &str = "/v4/timd/set_login_settings";
const HISTORY: &str = "/v4/timd/get_login_settings_history";

async fn node(redis: &RedisServer, login: LoginSettings) -> Server {
    let url = redis.url();
    Server::start(move |c| {
        let mut cluster = ClusterSettings::new(url);
        cluster.lease_ms = 3_000;
        c.cluster = Some(cluster);
        c.login = login;
    })
    .await
}

/// A change answered by node 1 is obeyed by logins on nodes 2 and 3 at once: no waiting.
#[tokio::test]
async fn a_change_on_one_node_is_obeyed_by_the_others_when_it_answers() {
    let redis = RedisServer::start();
    let nodes = [
        node(&redis, web(1)).await,
        node(&redis, web(1)).await,
        node(&redis, web(1)).await,
    ];
    let mut t1 = nodes[1].connect().await;
    login_ok(&mut t1, 1, "alice", "t1").await;
    let set = Rest::new(nodes[0].addr, APP, KEY)
        .call(SET_SETTINGS, json!({"WebInstances": 2}))
        .await;
    assert_eq!(set.code(), 0, "{}", set.json);
    for n in &nodes {
        assert_eq!(n.state.apps().default_app().settings().web_instances, 2);
    }
    // Node 2 admits a second tab beside the first (limit 2 already there)...
    let mut t2 = nodes[2].connect().await;
    login_ok(&mut t2, 1, "alice", "t2").await;
    common::expect_untouched(&mut t1).await;
    // ...and node 1 a third, which kicks the earliest on node 1.
    let mut t3 = nodes[1].connect().await;
    login_ok(&mut t3, 1, "alice", "t3").await;
    expect_kicked(&mut t1, KickReason::MultipleAccount).await;
    common::expect_untouched(&mut t2).await;
    // ApplyNow from node 2 reaches sessions held by nodes 1 and 2.
    let set = Rest::new(nodes[2].addr, APP, KEY)
        .call(SET_SETTINGS, json!({"WebInstances": 1, "ApplyNow": 1}))
        .await;
    assert_eq!(set.code(), 0, "{}", set.json);
    expect_kicked(&mut t2, KickReason::MultipleAccount).await;
    common::expect_untouched(&mut t3).await;
}

/// A node that missed the announcement (its subscription was down) learns the version on
/// its next lease round.
#[tokio::test]
async fn a_node_that_missed_the_announcement_catches_up_within_a_round() {
    let redis = RedisServer::start();
    let a = node(&redis, web(1)).await;
    let b = node(&redis, web(1)).await;
    // Changed behind the nodes' backs (as if the message were lost): only the stored hash.
    redis.command(&[
        "HSET",
        &format!("tim:app:{{{APP}}}:settings"),
        "version",
        "9",
        "web",
        "4",
    ]);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while [&a, &b]
        .iter()
        .any(|n| n.state.apps().default_app().versioned().version != 9)
    {
        assert!(tokio::time::Instant::now() < deadline, "not caught up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(a.state.apps().default_app().settings().web_instances, 4);
}

/// Embedded: a change survives a restart, and the restart's flags (the old initial
/// settings) do not undo it.
#[tokio::test]
async fn an_api_change_survives_a_restart_with_the_old_flags() {
    let mut server = Server::start(|c| c.login = web(1)).await;
    let rest = Rest::new(server.addr, APP, KEY);
    assert_eq!(
        rest.call(
            SET_SETTINGS,
            json!({"WebInstances": 3, "MultiPlatformPolicy": "all"})
        )
        .await
        .code(),
        0
    );
    server.restart().await;
    let got = rest.call(GET_SETTINGS, json!({})).await;
    assert_eq!(
        got.json["LoginSettings"],
        json!({"WebInstances": 3, "PlatformInstances": 1, "MultiPlatformPolicy": "all"})
    );
    assert_eq!(got.json["Version"], 2);
    let history = rest.call(HISTORY, json!({})).await;
    assert_eq!(history.json["History"].as_array().unwrap().len(), 2);
    // And it decides: three tabs fit.
    let mut tabs = Vec::new();
    for t in ["a", "b", "c"] {
        let mut ws = server.connect().await;
        login_ok(&mut ws, 1, "alice", t).await;
        tabs.push(ws);
    }
    for ws in &mut tabs {
        common::expect_untouched(ws).await;
    }
}

/// Cluster: the whole cluster restarts (every node, new processes) on the same Redis: the
/// change stays.
#[tokio::test]
async fn an_api_change_survives_a_restart_of_the_whole_cluster() {
    let redis = RedisServer::start();
    let mut first = TimdNode::builder()
        .redis(&redis.url())
        .args(["--web-instances", "1"])
        .start();
    let rest = Rest::new(first.addr(), APP, KEY);
    assert_eq!(
        rest.call(SET_SETTINGS, json!({"WebInstances": 4}))
            .await
            .code(),
        0
    );
    first.terminate();
    let second = TimdNode::builder()
        .redis(&redis.url())
        .args(["--web-instances", "1"])
        .start();
    let got = Rest::new(second.addr(), APP, KEY)
        .call(GET_SETTINGS, json!({}))
        .await;
    assert_eq!(got.json["LoginSettings"]["WebInstances"], 4);
    assert!(
        second.log().contains("the stored ones apply"),
        "the start says which settings apply and why: {}",
        second.log()
    );
}

/// A data directory written by the single-app release (schema 2, made by `timd` at commit
/// 00d8818 — see fixtures/store-v2/README.md) opens in place: accounts, kick times and
/// ended sessions belong to the app of the flags, nothing is lost, and another app sees
/// none of them.
#[tokio::test]
async fn a_single_app_store_upgrades_in_place() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-v2/timd.sqlite3");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fixture, dir.path().join("timd.sqlite3")).unwrap();
    {
        let old = schema_of(&dir.path().join("timd.sqlite3"));
        assert_eq!(old, 2, "the fixture is a schema-2 file");
    }
    for _ in 0..2 {
        // Twice: the second open finds the current schema and changes nothing.
        let store = Store::open_in(dir.path(), APP).unwrap();
        assert_eq!(store.schema_version().unwrap(), timd::store::SCHEMA_VERSION);
        let users: Vec<String> = ["alice", "bob", "carol", "dave", "erin"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            store.accounts_exist(APP, &users).unwrap(),
            [true, true, true, false, true],
            "dave was deleted"
        );
        assert!(store.kicked_at(APP, "bob").unwrap().is_some());
        assert!(store.kicked_at(APP, "dave").unwrap().is_some());
        assert_eq!(store.kicked_at(APP, "alice").unwrap(), None);
        assert_eq!(store.accounts_exist(7, &users).unwrap(), [false; 5]);
        assert_eq!(store.kicks(7).unwrap(), []);
        let ended: i64 = store
            .connection()
            .query_row(
                "SELECT count(*) FROM ended_sessions WHERE app = ?1 AND user_id = 'erin'",
                [APP],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ended, 1, "erin's logout is remembered");
    }
}

/// The same upgrade through the binary: a node started on the old data directory serves
/// the old accounts and refuses a UserSig revoked by the old kick.
#[tokio::test]
async fn the_binary_upgrades_an_old_data_directory() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-v2/timd.sqlite3");
    let mut node = TimdNode::start();
    node.terminate();
    std::fs::create_dir_all(node.data_dir()).unwrap();
    for f in ["timd.sqlite3", "timd.sqlite3-wal", "timd.sqlite3-shm"] {
        let _ = std::fs::remove_file(node.data_dir().join(f));
    }
    std::fs::copy(&fixture, node.data_dir().join("timd.sqlite3")).unwrap();
    node.start_again();
    let rest = Rest::new(node.addr(), APP, KEY);
    let check = rest
        .call(
            CHECK,
            json!({"CheckItem": [{"UserID": "alice"}, {"UserID": "dave"}]}),
        )
        .await;
    assert_eq!(check.json["ResultItem"][0]["AccountStatus"], "Imported");
    assert_eq!(check.json["ResultItem"][1]["AccountStatus"], "NotImported");
    let store = Store::open_in(&node.data_dir(), APP).unwrap();
    let kicked = store.kicked_at(APP, "bob").unwrap().unwrap();
    drop(store);
    let mut ws = tim_test_support::ws::connect(&node.ws_url()).await;
    let before_kick = tim_usersig::generate(APP, KEY, "bob", kicked - 10, 86_400 * 3650);
    send(&mut ws, &common::login(1, "bob", &before_kick, "tab")).await;
    assert_eq!(
        recv_error(&mut ws).await.1,
        70001,
        "the old kick still revokes"
    );
    let mut ws = tim_test_support::ws::connect(&node.ws_url()).await;
    login_ok(&mut ws, 1, "alice", "tab").await;
}

fn schema_of(path: &std::path::Path) -> u32 {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Redis lost the app's settings (a flush): the next change builds on what the nodes decide
/// with, and its version stays above theirs, so every node takes it.
#[tokio::test]
async fn a_change_after_redis_lost_the_settings_still_applies_everywhere() {
    let redis = RedisServer::start();
    let a = node(&redis, web(1)).await;
    let b = node(&redis, web(1)).await;
    let rest = Rest::new(a.addr, APP, KEY);
    let set = rest
        .call(
            SET_SETTINGS,
            json!({"WebInstances": 2, "MultiPlatformPolicy": "all"}),
        )
        .await;
    assert_eq!(set.json["Version"], 2);
    assert_eq!(redis.command(&["FLUSHALL"]), "OK");
    let set = rest.call(SET_SETTINGS, json!({"WebInstances": 3})).await;
    assert_eq!(set.code(), 0, "{}", set.json);
    assert_eq!(set.json["Version"], 3, "{}", set.json);
    assert_eq!(
        set.json["LoginSettings"],
        json!({"WebInstances": 3, "PlatformInstances": 1, "MultiPlatformPolicy": "all"}),
        "the unchanged fields are the ones in force, not the first ones"
    );
    for n in [&a, &b] {
        let now = n.state.apps().default_app().versioned();
        assert_eq!((now.version, now.settings.web_instances), (3, 3));
    }
}

/// Redis lost the settings and a node started meanwhile with other flags (it stored its
/// first ones as version 1): the highest version wins, and every node converges on the last
/// change an admin made, within a lease round.
#[tokio::test]
async fn after_redis_lost_the_settings_the_nodes_converge_on_the_last_change() {
    let redis = RedisServer::start();
    let a = node(&redis, web(1)).await;
    let set = Rest::new(a.addr, APP, KEY)
        .call(SET_SETTINGS, json!({"WebInstances": 4}))
        .await;
    assert_eq!(set.json["Version"], 2);
    assert_eq!(redis.command(&["FLUSHALL"]), "OK");
    let b = node(&redis, web(1)).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let versions: Vec<_> = [&a, &b]
            .iter()
            .map(|n| n.state.apps().default_app().versioned())
            .collect();
        if versions
            .iter()
            .all(|v| v.version == 2 && v.settings.web_instances == 4)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged: {versions:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let history = Rest::new(b.addr, APP, KEY).call(HISTORY, json!({})).await;
    assert!(
        history.json["History"][0]["Admin"]
            .as_str()
            .unwrap()
            .starts_with("(restored by node"),
        "{}",
        history.json
    );
}

/// New flags at a restart apply as long as no admin changed the settings through the API
/// (the last change was the configuration's); after an API change they do not (above).
#[tokio::test]
async fn new_flags_apply_at_a_restart_while_no_admin_changed_the_settings() {
    // Embedded.
    let server = Server::start(|c| c.login = web(1)).await;
    let dir = {
        let mut server = server;
        server.stop().await;
        server.dir
    };
    let server = Server::start_in(dir, |c| c.login = web(3)).await;
    let got = Rest::new(server.addr, APP, KEY)
        .call(GET_SETTINGS, json!({}))
        .await;
    assert_eq!(got.json["LoginSettings"]["WebInstances"], 3, "{}", got.json);
    assert_eq!(got.json["Version"], 2);
    // Cluster: a node restarted with new flags changes them for every node.
    let redis = RedisServer::start();
    let a = node(&redis, web(1)).await;
    let mut b = TimdNode::builder()
        .redis(&redis.url())
        .args(["--web-instances", "1"])
        .start();
    b.terminate();
    let b = TimdNode::builder()
        .redis(&redis.url())
        .args(["--web-instances", "2"])
        .start();
    let got = Rest::new(b.addr(), APP, KEY)
        .call(GET_SETTINGS, json!({}))
        .await;
    assert_eq!(got.json["LoginSettings"]["WebInstances"], 2, "{}", got.json);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while a.state.apps().default_app().settings().web_instances != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node a never took the new flags"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
