//! `timd`: the tim-wasm server. WebSocket login gateway at `/ws`, in-memory session
//! registry, embedded SQLite account store, the admin REST API (`/v4/...`, `docs/rest.md`),
//! and (with `--demo`) the demo page, the SDK package and a UserSig vending endpoint.
//!
//! [`app`] builds the router without a socket (router-level tests call it directly);
//! [`serve`] binds, serves and shuts down gracefully (what `timd serve` runs).

pub mod apps;
pub mod apps_file;
pub mod backend;
pub mod bounded;
pub mod callbacks;
pub mod cli;
pub mod client_addr;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod console;
pub mod demo;
pub mod demo_guard;
pub mod ended;
pub mod events;
pub mod gateway;
pub mod kicks;
pub mod limits;
pub mod listener;
pub mod login;
pub mod metrics;
pub mod origins;
pub mod policy;
pub mod registry;
pub mod rest;
pub mod session;
pub mod state;
pub mod store;
pub mod ticket;
pub mod token_bucket;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use backend::Backend;
pub use config::{Config, ConfigError};
pub use demo::devices::Devices;
pub use registry::Registry;
pub use state::AppState;
pub use store::{Store, StoreError, StoreHandle};

/// How long shutdown waits for sockets to finish their close handshakes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The HTTP application: `/ws`, `/healthz`, the admin REST API under `/v4`, the operator's
/// console (`/console`), and the demo
/// routes when `config.demo` (with no native demo devices: see [`router`]).
pub fn app(state: AppState) -> Router {
    router(state, Devices::default())
}

/// [`app`], the demo routes running `devices`.
pub fn router(state: AppState, devices: Devices) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::handler))
        .route("/ws", get(gateway::ws_handler));
    router = rest::routes(router);
    router = console::routes(router);
    if state.config().demo {
        // Behind the loopback fence (`demo_guard.rs`).
        let demo_key = state.apps().default_app().key() == config::DEMO_KEY;
        let demo = demo::routes(Router::new(), state.config())
            .layer(axum::middleware::from_fn(move |request, next| {
                demo_guard::guard(demo_key, request, next)
            }))
            .with_state(demo::DemoState {
                app: state.clone(),
                devices,
            });
        router = router.merge(demo);
    }
    // Spans name the path only: query strings may carry credentials (the REST API's
    // `usersig=`), which must never reach the logs.
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
    });
    router.layer(trace).with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("server error: {0}")]
    Io(#[from] io::Error),
}

/// What the executable plugs into the library for `serve`: parts it does not hold itself.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// The native client behind `--demo`'s demo devices (`timd serve` plugs in tim-client,
    /// which this library does not depend on); without one the device routes answer 503.
    pub demo_devices: Option<Arc<dyn demo::devices::Driver>>,
}

/// Validates `config`, opens the store, listens, and serves until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    serve_with(config, ServeOptions::default()).await
}

/// [`serve`], with what the executable plugs in.
pub async fn serve_with(config: Config, options: ServeOptions) -> Result<(), ServeError> {
    config.validate()?;
    if config.demo {
        for dir in [&config.www_dir, &config.pkg_dir] {
            if !dir.is_dir() {
                tracing::warn!(dir = %dir.display(), "demo mode: directory not found; it will 404");
            }
        }
        if config.default_key() != config::DEMO_KEY {
            tracing::warn!(
                "demo mode with an app key of its own: /demo/usersig hands out no UserSigs; \
                 the other demo routes answer loopback pages only, as always"
            );
        }
    }
    let addr = config.listen;
    let state = AppState::open(config).await.map_err(|e| match e {
        backend::OpenError::Store(e) => ServeError::Store(e),
        backend::OpenError::Cluster(e) => ServeError::Cluster(e),
    })?;
    let devices = Devices::default();
    if let Some(driver) = options.demo_devices {
        devices.set_driver(driver);
    }
    // Installed before listening: a SIGTERM sent once the server answers must stop it
    // gracefully, not kill it (tokio installs a handler only when its future is polled).
    let shutdown = shutdown_signal();
    let asked = state.config().listen_backlog;
    let listener =
        listener::bind(addr, asked).map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let somaxconn = listener::kernel_max_backlog();
    if somaxconn.is_some_and(|cap| cap < asked) {
        tracing::warn!(
            asked,
            somaxconn,
            "the kernel caps the listen backlog at net.core.somaxconn: a reconnect storm of \
             more simultaneous connects loses some SYNs (raise it: sysctl net.core.somaxconn)"
        );
    }
    tracing::info!(
        addr = %local,
        backlog = listener::effective_backlog(asked, somaxconn),
        apps = state.apps().len(),
        sdkappid = state.apps().default_app().sdkappid,
        demo = state.config().demo,
        cluster = state.backend().node().as_deref(),
        data_dir = %state.config().data_dir.display(),
        "timd listening"
    );
    run_with(listener, state, devices, shutdown).await?;
    Ok(())
}

/// Serves `app(state)` on `listener` until `shutdown` completes; then stops accepting,
/// closes every socket with `close::SERVICE_RESTART` and waits (at most
/// [`SHUTDOWN_GRACE`]) for them to finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    run_with(listener, state, Devices::default(), shutdown).await
}

/// [`run`], the demo routes running `devices`.
pub async fn run_with(
    listener: TcpListener,
    state: AppState,
    devices: Devices,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let signal_state = state.clone();
    // Demo devices connect to this very listener.
    devices.set_server(listener.local_addr()?);
    let limits_sweeper = tokio::spawn(sweep_limits(state.clone()));
    // The backend's tasks stop only after the sockets closed: their last acts (away) still
    // count.
    let backend_stop = tokio_util::sync::CancellationToken::new();
    state.callbacks().announce();
    let mut backend_tasks = state
        .backend()
        .spawn_tasks(state.apps(), backend_stop.clone());
    backend_tasks.extend(
        state
            .backend()
            .spawn_event_relay(state.events(), backend_stop.clone()),
    );
    // Stopped with the backend: the sockets' last events (their disconnects) are stored
    // first; what is not delivered by then waits in the outbox.
    backend_tasks.extend(
        state
            .callbacks()
            .spawn(state.backend().node(), backend_stop.clone()),
    );
    let service =
        router(state.clone(), devices).into_make_service_with_connect_info::<SocketAddr>();
    // No Nagle: a `kicked` frame must not wait for the ACK of the frame before it (the
    // peer's delayed ACK would add up to 40 ms to kick delivery).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing sockets");
            signal_state.shutdown();
        })
        .await?;
    // Upgraded sockets are not HTTP connections any more: axum does not wait for them.
    state.shutdown();
    limits_sweeper.abort();
    state.sockets().close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.sockets().wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = state.sockets().len(),
            "sockets still open after the shutdown grace period"
        );
    }
    backend_stop.cancel();
    for task in backend_tasks {
        let _ = task.await;
    }
    Ok(())
}

/// Every couple of seconds: forgets the abuse limits' entries that aged out.
async fn sweep_limits(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.limits().sweep(tokio::time::Instant::now());
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, whose handlers are installed by this call (not
/// at the first poll). Must run inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async fn next(s: Option<tokio::signal::unix::Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async move {
            tokio::select! {
                () = next(interrupt) => {}
                () = next(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
