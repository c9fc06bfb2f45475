//! Cluster mode (`--redis`): three nodes on one real Redis, every login-policy invariant
//! across nodes. Nodes run in this process (each its own `AppState`, node id, Redis
//! connections and listener); the kill -9 tests in `cluster_faults.rs` use the binary.
mod common;

use common::{recv, recv_close, send, sig, RedisServer, Ws, APP, KEY};
use tim_proto::{close, ClientFrame, KickReason, Login, Platform, ServerFrame};
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
        config.cluster = Some(ClusterSettings {
            redis_url: redis.url(),
            lease_ms: LEASE_MS,
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

fn web(n: u8) -> LoginSettings {
    LoginSettings {
        web_instances: n,
        platform_instances: 1,
        policy: LoginPolicy::Dual,
    }
}

/// Expects `kicked{reason}` then close 4002.
async fn expect_kicked(ws: &mut Ws, reason: KickReason) {
    match recv(ws).await {
        ServerFrame::Kicked { reason: r } => assert_eq!(r, reason),
        other => panic!("expected kicked {reason:?}, got {other:?}"),
    }
    assert_eq!(recv_close(ws).await, close::KICKED);
}

/// Nothing arrives on `ws` for a while (it is still online): a ping gets its pong.
async fn expect_untouched(ws: &mut Ws) {
    send(ws, &ClientFrame::Ping).await;
    assert_eq!(recv(ws).await, ServerFrame::Pong, "still online");
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
    assert_eq!(a.state.cluster().unwrap().held().len(), 1);
}
