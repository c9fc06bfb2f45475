//! A real `timd` served in the test's own process on 127.0.0.1:0: the tests reach into its
//! `AppState` (registry, store) and still talk to it over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use tempfile::TempDir;
use tim_proto::Platform;
use timd::policy::{LoginPolicy, LoginSettings};
use timd::{AppState, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite;

use crate::ws::Ws;
use crate::{APP, KEY};

/// How long a graceful stop may take (sockets closed with 1012, store flushed).
const STOP_BOUND: Duration = Duration::from_secs(6);

pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The data directory's parent (the store is in `dir/data`): move it into
    /// [`Server::start_in`] to restart on the same data.
    pub dir: TempDir,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts a server for [`APP`]/[`KEY`] with `tweak` applied to the config. Every
    /// instance has room (policy all, 10 Web, 3 per other platform) unless `tweak` sets
    /// the login settings its test is about.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), tweak).await
    }

    /// Like [`Server::start`] on an existing data directory (a restart).
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config::new(APP, KEY);
        config.data_dir = dir.path().join("data");
        config.login = LoginSettings {
            web_instances: 10,
            platform_instances: 3,
            policy: LoginPolicy::All,
        };
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, stop, task) = serve(listener, config.clone()).await;
        Server {
            addr,
            state,
            dir,
            config,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops gracefully and starts again on the same address, config and data directory,
    /// with an empty registry (a process restart, minus the process).
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let (state, stop, task) = serve(listener, self.config.clone()).await;
        self.state = state;
        self.stop = Some(stop);
        self.task = Some(task);
    }

    /// Triggers graceful shutdown and waits for `run` to return, which must succeed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_BOUND, task)
                .await
                .expect("run returns after shutdown")
                .expect("the server task does not panic")
                .expect("run ends without an error");
        }
    }

    /// `ws://ADDR`: the base URL native clients (`tim_client`, `timd client --url`) take.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `ws://ADDR/ws`: the WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn connect(&self) -> Ws {
        crate::ws::connect(&self.ws_url()).await
    }

    /// Connects with extra request headers (`Origin`, `X-Forwarded-For`, ...).
    pub async fn connect_with(&self, headers: &[(&str, &str)]) -> Ws {
        self.try_connect_with(headers).await.unwrap()
    }

    pub async fn try_connect_with(
        &self,
        headers: &[(&str, &str)],
    ) -> Result<Ws, tungstenite::Error> {
        crate::ws::try_connect_with(&self.ws_url(), headers).await
    }

    /// Connects as client `addr`, through a trusted proxy on loopback (the server must
    /// trust 127.0.0.1).
    pub async fn connect_from(&self, addr: &str) -> Ws {
        self.connect_with(&[("x-forwarded-for", addr)]).await
    }

    /// `(instance, platform, attached)` of `user`'s slots, earliest first (embedded mode).
    pub fn slots(&self, user: &str) -> Vec<(String, Platform, bool)> {
        self.state
            .registry()
            .instances(user)
            .into_iter()
            .map(|i| (i.instance, i.platform, i.attached))
            .collect()
    }

    /// `user`'s instance ids, earliest first.
    pub fn instances(&self, user: &str) -> Vec<String> {
        self.slots(user).into_iter().map(|s| s.0).collect()
    }
}

async fn serve(
    listener: TcpListener,
    config: Config,
) -> (
    AppState,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let state = AppState::open(config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(timd::run(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    (state, stop, task)
}

/// What embedded-mode tests read of the server directly: the default app's registry.
/// (The behaviour suite, which runs on both backends, asks `state.backend()` instead.)
pub trait EmbeddedProbe {
    /// The embedded backend; panics in cluster mode.
    fn embedded(&self) -> &timd::backend::Embedded;
    /// The registry of the default app.
    fn registry(&self) -> &timd::Registry;
    /// The SQLite store.
    fn store(&self) -> &timd::StoreHandle {
        self.embedded().store()
    }
    /// The default app's REST kick time of `user` (the in-memory copy).
    fn kicked_at(&self, user: &str) -> Option<u64>;
}

impl EmbeddedProbe for AppState {
    fn embedded(&self) -> &timd::backend::Embedded {
        match &**self.backend() {
            timd::Backend::Embedded(e) => e,
            timd::Backend::Cluster(_) => panic!("this probe is for embedded mode"),
        }
    }

    fn registry(&self) -> &timd::Registry {
        self.embedded().registry(self.apps().default_app().sdkappid)
    }

    fn kicked_at(&self, user: &str) -> Option<u64> {
        self.embedded()
            .kicked_at(self.apps().default_app().sdkappid, user)
    }
}
