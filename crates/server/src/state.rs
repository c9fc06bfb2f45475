//! What every request handler and socket task shares: configuration, the registry, the
//! store, the login checker and the shutdown signal. One `Arc`, so clones are cheap.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::demo::devices::Devices;
use crate::kicks::Kicks;
use crate::limits::Limits;
use crate::login::LoginChecker;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::{Store, StoreError, StoreHandle};
use crate::ticket::Tickets;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    registry: Registry,
    store: StoreHandle,
    login: LoginChecker,
    tickets: Tickets,
    kicks: Kicks,
    /// The abuse limits on `/ws` (`limits.rs`) and what they refused (`metrics.rs`).
    limits: Limits,
    metrics: Metrics,
    /// Demo mode's in-process native devices (empty otherwise).
    devices: Devices,
    /// Cluster mode: this node's membership (sessions, accounts and kicks in Redis).
    cluster: Option<Arc<Cluster>>,
    shutdown: CancellationToken,
    sockets: TaskTracker,
}

impl AppState {
    /// Opens the store under `config.data_dir` (creating it) and starts its thread.
    /// Does not validate `config` (tests use tiny timeouts); `serve` does.
    pub fn new(config: Config) -> Result<AppState, StoreError> {
        AppState::build(config, None)
    }

    /// [`AppState::new`], joining the cluster first when `config.cluster` says so.
    pub async fn open(config: Config) -> Result<AppState, OpenError> {
        let cluster = match &config.cluster {
            None => None,
            Some(settings) => {
                let metrics = Metrics::new();
                let cluster =
                    Cluster::connect(config.sdkappid, settings.clone(), metrics.cluster()).await?;
                return Ok(AppState::build_with(config, Some(cluster), metrics)?);
            }
        };
        Ok(AppState::build(config, cluster)?)
    }

    fn build(config: Config, cluster: Option<Arc<Cluster>>) -> Result<AppState, StoreError> {
        AppState::build_with(config, cluster, Metrics::new())
    }

    fn build_with(
        config: Config,
        cluster: Option<Arc<Cluster>>,
        metrics: Metrics,
    ) -> Result<AppState, StoreError> {
        // Kick times are loaded before the first login can be checked.
        let store = Store::open_in(&config.data_dir)?;
        let kicks = Kicks::from_entries(store.kicks()?);
        // Tickets of sessions that ended before a restart stay dead.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let ended = store.ended_sessions(now)?;
        let store = StoreHandle::start(store)?;
        let registry = Registry::new().with_journal(store.ended_journal());
        registry.restore_ended(ended, now);
        let login =
            LoginChecker::new(config.sdkappid, config.key.clone()).with_kicks(kicks.clone());
        Ok(AppState {
            inner: Arc::new(Inner {
                tickets: Tickets::new(&config.key),
                kicks,
                limits: Limits::new(config.limits),
                metrics,
                devices: Devices::default(),
                cluster,
                config,
                registry,
                store,
                login,
                shutdown: CancellationToken::new(),
                sockets: TaskTracker::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn store(&self) -> &StoreHandle {
        &self.inner.store
    }

    pub fn login(&self) -> &LoginChecker {
        &self.inner.login
    }

    /// Signs and checks session tickets (resume).
    pub fn tickets(&self) -> &Tickets {
        &self.inner.tickets
    }

    /// The abuse limits on `/ws`.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Cluster mode's membership, if this node runs in one (`--redis`).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The REST kick times (durable ones only).
    pub fn kicks(&self) -> &Kicks {
        &self.inner.kicks
    }

    /// `user`'s last REST kick or deletion (unix seconds): UserSigs issued at or before it
    /// are refused (70001). Cheap and sync: one hash lookup.
    pub fn kicked_at(&self, user: &str) -> Option<u64> {
        self.inner.kicks.kicked_at(user)
    }

    /// The native devices the demo page started (demo mode only).
    pub fn demo_devices(&self) -> &Devices {
        &self.inner.devices
    }

    /// Cancelled when the server shuts down: every socket closes with `SERVICE_RESTART`.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Tracks the socket tasks, so shutdown can wait for their close handshakes.
    pub fn sockets(&self) -> &TaskTracker {
        &self.inner.sockets
    }

    /// Starts a shutdown: sockets close with `SERVICE_RESTART`.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }
}

/// Why [`AppState::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] ClusterError),
}
