//! Durability of REST effects with the real `timd` binary on a real data dir: whatever the
//! API acknowledged survives `kill -9` and a restart, and old UserSigs stay refused.

mod common;
mod rest_client;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{login, now, recv, send, Ws, APP, KEY};
use hyper::Method;
use rest_client::*;
use serde_json::json;
use tim_proto::{KickReason, ServerFrame};
use timd::Store;

/// A `timd serve` child process. Dropping it kills it (SIGKILL).
struct Timd {
    child: Child,
    addr: SocketAddr,
}

impl Timd {
    /// Starts `timd serve` on a free loopback port over `data_dir`, with `envs`, and waits
    /// for it to listen (it logs its address).
    fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Timd {
        let mut child = Command::new(tim_test_support::timd_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--sdkappid"])
            .arg(APP.to_string())
            .arg("--key")
            .arg(KEY)
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("timd starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keeps draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .filter(|_| line.contains("timd listening"))
                {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("timd logs its address");
        Timd { child, addr }
    }

    fn rest(&self) -> Rest {
        Rest::new(self.addr, APP, KEY)
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Logs `user` in with `usersig`: `Ok` or the error code.
    async fn login(&self, user: &str, usersig: &str) -> Result<Ws, u32> {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .unwrap();
        send(&mut ws, &login(1, user, usersig, "tab")).await;
        match recv(&mut ws).await {
            ServerFrame::LoginOk(_) => Ok(ws),
            ServerFrame::Error(e) => Err(e.code),
            other => panic!("unexpected {other:?}"),
        }
    }
}

impl Drop for Timd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sig_at(user: &str, time: u64) -> String {
    tim_usersig::generate(APP, KEY, user, time, 3600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_imports_kicks_and_deletes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let timd = Timd::start(&data, &[]);
    let rest = timd.rest();
    let a = rest
        .call(MULTI_IMPORT, json!({"Accounts": ["alice", "bob", "carol"]}))
        .await;
    assert_eq!(a.code(), 0);
    let old_alice = sig_at("alice", now() - 10);
    let old_bob = sig_at("bob", now() - 10);
    let mut ws = timd.login("alice", &old_alice).await.unwrap();
    assert_eq!(rest.call(KICK, json!({"UserID": "alice"})).await.code(), 0);
    assert_eq!(
        recv(&mut ws).await,
        ServerFrame::Kicked {
            reason: KickReason::RestApi
        }
    );
    let a = rest
        .call(DELETE, json!({"DeleteItem": [{"UserID": "bob"}]}))
        .await;
    assert_eq!(a.json["ResultItem"][0]["ResultCode"], 0);
    timd.kill9();

    let timd = Timd::start(&data, &[]);
    let rest = timd.rest();
    assert_eq!(rest.status_of("alice").await, "Imported");
    assert_eq!(rest.status_of("bob").await, "NotImported");
    assert_eq!(rest.status_of("carol").await, "Imported");
    // Old UserSigs are still refused after the restart; new ones work.
    assert_eq!(timd.login("alice", &old_alice).await.err(), Some(70001));
    assert_eq!(timd.login("bob", &old_bob).await.err(), Some(70001));
    assert_eq!(rest.status_of("bob").await, "NotImported");
    assert!(timd.login("alice", &sig_at("alice", now())).await.is_ok());
    assert!(timd.login("bob", &sig_at("bob", now())).await.is_ok());
    assert_eq!(rest.status_of("bob").await, "Imported");
    assert!(timd
        .login("carol", &sig_at("carol", now() - 10))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_concurrent_kicks_loses_no_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let timd = Timd::start(&data, &[]);
    let rest = timd.rest();
    let users: Vec<String> = (0..60).map(|i| format!("user{i}")).collect();
    assert_eq!(
        rest.call(MULTI_IMPORT, json!({"Accounts": users[..30]}))
            .await
            .code(),
        0
    );
    assert_eq!(
        rest.call(MULTI_IMPORT, json!({"Accounts": users[30..]}))
            .await
            .code(),
        0
    );
    // Kicks start every 60 ms for 3.6 s; the server dies once a few are answered (a kick
    // answers within 2 s: once the last second it revokes is over; about 2.6 s in on a quiet
    // machine), when others are written but waiting for their second to pass, or not even
    // sent.
    let answered = Arc::new(AtomicUsize::new(0));
    let kicks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let rest = rest.clone();
            let user = user.clone();
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(60 * i as u64)).await;
                let sent_at = now();
                let url = format!("{KICK}?{}", rest.query());
                let body = json!({ "UserID": user }).to_string();
                let answer = rest.try_request(Method::POST, &url, body).await;
                if answer.as_ref().is_ok_and(|a| a.code() == 0) {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                (user, sent_at, answer.map(|a| a.code()))
            })
        })
        .collect();
    let started = std::time::Instant::now();
    while answered.load(Ordering::SeqCst) < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no kick answered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    timd.kill9();
    let mut acknowledged = Vec::new();
    let mut unanswered = 0;
    for kick in kicks {
        match kick.await.unwrap() {
            (user, sent_at, Ok(0)) => acknowledged.push((user, sent_at)),
            (_, _, Ok(code)) => panic!("kick failed with {code}"),
            (_, _, Err(_)) => unanswered += 1,
        }
    }
    assert!(
        !acknowledged.is_empty() && unanswered > 0,
        "the kill fell mid-way"
    );

    let timd = Timd::start(&data, &[]);
    let store = Store::open_in(&data, APP).unwrap();
    for (user, sent_at) in &acknowledged {
        let k = store.kicked_at(APP, user).unwrap();
        assert!(
            k.is_some_and(|k| k >= *sent_at),
            "{user}: acknowledged kick lost"
        );
        // A UserSig issued when the kick was sent is refused after the restart.
        assert_eq!(
            timd.login(user, &sig_at(user, *sent_at)).await.err(),
            Some(70001)
        );
    }
    // Every account survived too.
    let rest = timd.rest();
    let a = rest
        .call(
            CHECK,
            json!({"CheckItem": users[..50].iter().map(|u| json!({"UserID": u})).collect::<Vec<_>>()}),
        )
        .await;
    let items = a.json["ResultItem"].as_array().unwrap();
    assert!(items.iter().all(|i| i["AccountStatus"] == "Imported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_has_an_environment_twin() {
    let dir = tempfile::tempdir().unwrap();
    let timd = Timd::start(&dir.path().join("data"), &[("TIMD_REST_RATE_LIMIT", "2")]);
    let rest = timd.rest();
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let rest = rest.clone();
            tokio::spawn(async move {
                let body = json!({"CheckItem": [{"UserID": "a"}]});
                rest.call(CHECK, body).await.code()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for call in calls {
        codes.push(call.await.unwrap());
    }
    let refilled = (started.elapsed().as_secs_f64() * 2.0).ceil() as usize;
    let ok = codes.iter().filter(|c| **c == 0).count();
    assert!(ok >= 2 && ok <= 2 + refilled, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 60011), "{codes:?}");
    assert!(codes.contains(&60011), "{codes:?}");
}
