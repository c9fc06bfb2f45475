//! What every request handler and socket task shares: configuration, the apps, the backend
//! (where decisions live), the abuse limits, the metrics and the shutdown signal. One
//! `Arc`, so clones are cheap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::{App, Apps};
use crate::backend::{Backend, OpenError};
use crate::callbacks::Callbacks;
use crate::config::Config;
use crate::events::Events;
use crate::limits::Limits;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    apps: Arc<Apps>,
    backend: Arc<Backend>,
    /// The abuse limits on `/ws` (`limits.rs`) and what they refused (`metrics.rs`).
    limits: Limits,
    metrics: Metrics,
    /// What happens to sessions, for the operator's console (`events.rs`).
    events: Arc<Events>,
    /// The State.StateChange callbacks (`callbacks/`).
    callbacks: Callbacks,
    shutdown: CancellationToken,
    /// Set just before `shutdown` is cancelled: what a socket task reads on its wake-ups
    /// (the token's own check takes two locks every socket shares).
    shutting_down: AtomicBool,
    sockets: TaskTracker,
}

impl AppState {
    /// Opens the backend `config` names (the store under `config.data_dir`, or the cluster
    /// on Redis) and loads every app's login settings from it. Does not validate `config`
    /// (tests use tiny timeouts); `serve` does.
    pub async fn open(config: Config) -> Result<AppState, OpenError> {
        let apps = Arc::new(Apps::new(&config.app_configs()));
        let metrics = Metrics::new();
        let backend = Backend::open(&config, &apps, metrics.cluster_handles()).await?;
        let callbacks = Callbacks::new(
            &config.app_configs(),
            config.callback_settings,
            backend.callback_outbox(),
            metrics.callback_handles(),
        );
        Ok(AppState {
            inner: Arc::new(Inner {
                callbacks,
                limits: Limits::new(config.limits),
                metrics,
                config,
                apps,
                backend: Arc::new(backend),
                events: Arc::new(Events::new()),
                shutdown: CancellationToken::new(),
                shutting_down: AtomicBool::new(false),
                sockets: TaskTracker::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The apps this server serves.
    pub fn apps(&self) -> &Arc<Apps> {
        &self.inner.apps
    }

    /// `sdkappid`'s app, if served here.
    pub fn app(&self, sdkappid: u32) -> Option<&Arc<App>> {
        self.inner.apps.get(sdkappid)
    }

    /// Where decisions live (embedded or cluster: callers never ask which).
    pub fn backend(&self) -> &Arc<Backend> {
        &self.inner.backend
    }

    /// The abuse limits on `/ws`.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The session events this process saw (and, in cluster mode, the other nodes').
    pub fn events(&self) -> &Arc<Events> {
        &self.inner.events
    }

    /// The State.StateChange callbacks.
    pub fn callbacks(&self) -> &Callbacks {
        &self.inner.callbacks
    }

    /// Cancelled when the server shuts down: every socket closes with `SERVICE_RESTART`.
    /// Only [`AppState::shutdown`] cancels it (the sockets read [`AppState::shutting_down`]).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Whether [`AppState::shutdown`] was called (the token is cancelled right after).
    pub fn shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Tracks the socket tasks, so shutdown can wait for their close handshakes.
    pub fn sockets(&self) -> &TaskTracker {
        &self.inner.sockets
    }

    /// Starts a shutdown: sockets close with `SERVICE_RESTART`.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.shutdown.cancel();
    }
}
