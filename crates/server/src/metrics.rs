//! `GET /metrics`: Prometheus text exposition of what the abuse limits refuse and how full
//! the server is. Answered to loopback clients only (scrape from the host, or through a
//! proxy declared with `--trusted-proxies`, which then names the real client).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cluster::ClusterMetrics;
use crate::limits::Refusal;
use crate::state::AppState;

type Labels = Vec<(&'static str, &'static str)>;

/// Every metric `timd` exposes.
pub struct Metrics {
    registry: Registry,
    refused: Family<Labels, Counter>,
    bad_signatures: Counter,
    usersig_rate_limited: Counter,
    rest_rate_limited: Counter,
    connections: Gauge,
    online: Gauge,
    online_by_platform: Family<Labels, Gauge>,
    logins: Family<Vec<(&'static str, String)>, Counter>,
    /// Each app's `timd_logins{code="0"}` series once it has one: a successful login
    /// counts without building its labels.
    logins_ok: std::sync::RwLock<std::collections::HashMap<u32, Counter>>,
    kicks: Family<Labels, Counter>,
    entries: Family<Labels, Gauge>,
    settings_version: Family<Vec<(&'static str, String)>, Gauge>,
    tasks: Gauge,
    cluster: ClusterMetrics,
    callbacks: CallbackMetrics,
}

/// The State.StateChange callbacks' metrics (`callbacks/`).
#[derive(Clone)]
pub struct CallbackMetrics {
    sent: Counter,
    failed: Family<Labels, Counter>,
    retries: Counter,
    dropped: Family<Labels, Counter>,
    queued: Family<Vec<(&'static str, String)>, Gauge>,
    oldest: Family<Vec<(&'static str, String)>, Gauge>,
    latency: Histogram,
}

impl Default for CallbackMetrics {
    fn default() -> Self {
        CallbackMetrics::register(&mut Registry::default())
    }
}

impl CallbackMetrics {
    fn register(registry: &mut Registry) -> CallbackMetrics {
        let m = CallbackMetrics {
            sent: Counter::default(),
            failed: Family::default(),
            retries: Counter::default(),
            dropped: Family::default(),
            queued: Family::default(),
            oldest: Family::default(),
            // 1 ms .. ~65 s, doubling.
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 17,
            )),
        };
        registry.register(
            "timd_callbacks_sent",
            "State.StateChange callbacks the receiver accepted (2xx, ErrorCode 0)",
            m.sent.clone(),
        );
        registry.register(
            "timd_callbacks_failed",
            "Callback requests not accepted, by cause (status, error_code, bad_answer, timeout, connect, io)",
            m.failed.clone(),
        );
        for cause in [
            "status",
            "error_code",
            "bad_answer",
            "timeout",
            "connect",
            "io",
        ] {
            let _ = m.failed.get_or_create(&vec![("cause", cause)]);
        }
        registry.register(
            "timd_callbacks_retries",
            "Callback requests scheduled again after a failure",
            m.retries.clone(),
        );
        registry.register(
            "timd_callbacks_dropped",
            "Callback events dropped: past the queue cap (oldest first), or not storable",
            m.dropped.clone(),
        );
        for why in ["cap", "store"] {
            let _ = m.dropped.get_or_create(&vec![("why", why)]);
        }
        registry.register(
            "timd_callbacks_queued",
            "Callback events waiting for delivery, by app (refreshed every second by the delivering node)",
            m.queued.clone(),
        );
        registry.register(
            "timd_callbacks_oldest_age_seconds",
            "Age of the oldest callback event waiting, by app",
            m.oldest.clone(),
        );
        registry.register(
            "timd_callbacks_latency_seconds",
            "From the event (the decision) to the receiver's acceptance",
            m.latency.clone(),
        );
        m
    }

    pub fn sent(&self) {
        self.sent.inc();
    }

    pub fn sent_count(&self) -> u64 {
        self.sent.get()
    }

    pub fn failed(&self, cause: &'static str) {
        self.failed.get_or_create(&vec![("cause", cause)]).inc();
    }

    pub fn retry(&self) {
        self.retries.inc();
    }

    pub fn dropped(&self, why: &'static str, n: u64) {
        self.dropped.get_or_create(&vec![("why", why)]).inc_by(n);
    }

    pub fn latency(&self, d: std::time::Duration) {
        self.latency.observe(d.as_secs_f64());
    }

    /// The app's queue: events waiting and the oldest one's age (ms).
    pub fn queue(&self, app: u32, len: u64, oldest_ms: u64) {
        self.queued
            .get_or_create(&vec![("app", app.to_string())])
            .set(len as i64);
        self.oldest
            .get_or_create(&vec![("app", app.to_string())])
            .set((oldest_ms / 1000) as i64);
    }
}

/// The gauges read at scrape time.
#[derive(Default)]
pub struct Snapshot {
    pub connections: usize,
    pub online: usize,
    pub per_platform: Vec<(tim_proto::Platform, usize)>,
    /// The length of every internal map that could grow with traffic, by name.
    pub entries: Vec<(&'static str, usize)>,
    /// Live tokio tasks (one per connection, plus a handful of background ones).
    pub tasks: usize,
    /// The version of each app's login settings this process decides with.
    pub settings_versions: Vec<(u32, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "timd_ws_refused",
            "WebSocket connections and login attempts refused by an abuse limit, by reason",
            refused.clone(),
        );
        // Every reason shows from the start, at 0.
        for r in Refusal::ALL {
            let _ = refused.get_or_create(&vec![("reason", r.label())]);
        }
        let bad_signatures = Counter::default();
        registry.register(
            "timd_usersig_bad_signatures",
            "Logins and renewals with a UserSig whose signature is wrong (a guess)",
            bad_signatures.clone(),
        );
        let usersig_rate_limited = Counter::default();
        registry.register(
            "timd_usersig_rate_limited",
            "Bad signatures answered 70050: over the limit for their (UserID, address)",
            usersig_rate_limited.clone(),
        );
        let rest_rate_limited = Counter::default();
        registry.register(
            "timd_rest_rate_limited",
            "Admin REST calls refused with 60011 (over --rest-rate-limit)",
            rest_rate_limited.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "timd_ws_connections",
            "Open /ws connections",
            connections.clone(),
        );
        let online = Gauge::default();
        registry.register(
            "timd_online_instances",
            "Instances holding a slot (connected or waiting for a resume)",
            online.clone(),
        );
        let online_by_platform = Family::<Labels, Gauge>::default();
        registry.register(
            "timd_sessions_online",
            "Sessions this node holds, by platform (connected or waiting for a resume)",
            online_by_platform.clone(),
        );
        let logins = Family::<Vec<(&'static str, String)>, Counter>::default();
        registry.register(
            "timd_logins",
            "Login frames answered, by app (SDKAppID) and result code (0 = logged in)",
            logins.clone(),
        );
        let kicks = Family::<Labels, Counter>::default();
        registry.register(
            "timd_kicks",
            "Instances kicked out by this node's sockets, by KICKED_OUT type",
            kicks.clone(),
        );
        for reason in [
            tim_proto::KickReason::MultipleAccount,
            tim_proto::KickReason::MultipleDevice,
            tim_proto::KickReason::UserSigExpired,
            tim_proto::KickReason::RestApi,
        ] {
            let _ = kicks.get_or_create(&vec![("type", reason.as_str())]);
        }
        let entries = Family::<Labels, Gauge>::default();
        registry.register(
            "timd_state_entries",
            "Entries of each in-memory map that traffic grows (the sweeps must keep them bounded)",
            entries.clone(),
        );
        let settings_version = Family::<Vec<(&'static str, String)>, Gauge>::default();
        registry.register(
            "timd_login_settings_version",
            "The version of each app's login settings this process decides with (set_login_settings bumps it)",
            settings_version.clone(),
        );
        let tasks = Gauge::default();
        registry.register(
            "timd_tasks_alive",
            "Live tokio tasks (one per open connection, plus the background ones)",
            tasks.clone(),
        );
        let cluster = ClusterMetrics {
            // 100 µs .. ~1.6 s, doubling.
            redis_seconds: Some(Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 15),
            )),
            ..ClusterMetrics::default()
        };
        if let Some(h) = &cluster.redis_seconds {
            registry.register(
                "timd_redis_seconds",
                "Round trip of each Redis call (cluster mode)",
                h.clone(),
            );
        }
        let renewals = Family::<Labels, Counter>::default();
        registry.register(
            "timd_lease_renewals",
            "Node lease renewals (one per node round; cluster mode), by result",
            renewals.clone(),
        );
        // One guard at a time: two `get_or_create` in one expression deadlock
        // (the first guard still holds the family's lock).
        let renewals_ok = renewals.get_or_create(&vec![("result", "ok")]).clone();
        let renewals_failed = renewals.get_or_create(&vec![("result", "failed")]).clone();
        let cluster = ClusterMetrics {
            renewals_ok,
            renewals_failed,
            ..cluster
        };
        registry.register(
            "timd_node_fenced",
            "Times this node fenced itself (its lease lapsed: its sessions were closed to resume)",
            cluster.fenced.clone(),
        );
        registry.register(
            "timd_dead_nodes_reaped",
            "Dead nodes whose slots this node cleaned up",
            cluster.nodes_reaped.clone(),
        );
        registry.register(
            "timd_lease_gone_sessions",
            "Sessions a registration again (after Redis lost data) found kicked or superseded elsewhere",
            cluster.renewals_gone.clone(),
        );
        registry.register(
            "timd_sessions_registered_again",
            "Sessions a renewal registered again after Redis lost them",
            cluster.registered_again.clone(),
        );
        registry.register(
            "timd_reconciliations",
            "Subscriptions to the settings channel, each followed by a node round",
            cluster.reconciliations.clone(),
        );
        registry.register(
            "timd_channel_notices",
            "Kicks and supersessions read from the node's stream",
            cluster.channel_notices.clone(),
        );
        let callbacks = CallbackMetrics::register(&mut registry);
        Metrics {
            callbacks,
            online_by_platform,
            logins,
            logins_ok: Default::default(),
            kicks,
            entries,
            settings_version,
            tasks,
            cluster,
            registry,
            refused,
            bad_signatures,
            usersig_rate_limited,
            rest_rate_limited,
            connections,
            online,
        }
    }

    pub fn refused(&self, why: Refusal) {
        self.refused
            .get_or_create(&vec![("reason", why.label())])
            .inc();
    }

    /// How many refusals for `why` so far.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused
            .get_or_create(&vec![("reason", why.label())])
            .get()
    }

    pub fn bad_signature(&self, rate_limited: bool) {
        self.bad_signatures.inc();
        if rate_limited {
            self.usersig_rate_limited.inc();
        }
    }

    /// The handles the callbacks update.
    pub fn callback_handles(&self) -> CallbackMetrics {
        self.callbacks.clone()
    }

    /// The handles the cluster updates.
    pub fn cluster_handles(&self) -> ClusterMetrics {
        self.cluster.clone()
    }

    /// A login frame for `app` (`None`: an SDKAppID not served here, one label for all of
    /// them so clients cannot grow the label set) was answered with `code` (0: logged in).
    pub fn login(&self, app: Option<u32>, code: u32) {
        if let (Some(app), 0) = (app, code) {
            let known = self
                .logins_ok
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&app)
                .map(Counter::inc);
            if known.is_none() {
                let series = self
                    .logins
                    .get_or_create(&vec![("app", app.to_string()), ("code", "0".into())])
                    .clone();
                series.inc();
                self.logins_ok
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(app, series);
            }
            return;
        }
        let app = app.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        self.logins
            .get_or_create(&vec![("app", app), ("code", code.to_string())])
            .inc();
    }

    /// A socket of this node was kicked out.
    pub fn kicked(&self, reason: tim_proto::KickReason) {
        self.kicks
            .get_or_create(&vec![("type", reason.as_str())])
            .inc();
    }

    pub fn rest_rate_limited(&self) {
        self.rest_rate_limited.inc();
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, now: &Snapshot) -> String {
        self.connections.set(now.connections as i64);
        self.online.set(now.online as i64);
        for (platform, n) in &now.per_platform {
            self.online_by_platform
                .get_or_create(&vec![("platform", platform.as_str())])
                .set(*n as i64);
        }
        for (map, n) in &now.entries {
            self.entries
                .get_or_create(&vec![("map", *map)])
                .set(*n as i64);
        }
        self.tasks.set(now.tasks as i64);
        for (app, version) in &now.settings_versions {
            self.settings_version
                .get_or_create(&vec![("app", app.to_string())])
                .set(*version as i64);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Reads every gauge now. The registry's maps are walked shard by shard (each locked in
/// turn), which a scrape every few seconds can afford.
fn snapshot(state: &AppState) -> Snapshot {
    let gauges = state.backend().gauges();
    let mut entries = gauges.entries;
    entries.push(("rate_limiter", state.limits().tracked()));
    entries.push((
        "failure_limiter",
        state
            .apps()
            .iter()
            .map(|a| a.checker().failures().tracked())
            .sum(),
    ));
    entries.push((
        "verified_usersigs",
        state
            .apps()
            .iter()
            .map(|a| a.checker().remembered_count())
            .sum(),
    ));
    Snapshot {
        connections: state.limits().open(),
        online: gauges.online,
        per_platform: gauges.per_platform,
        entries,
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        settings_versions: state
            .apps()
            .iter()
            .map(|a| (a.sdkappid, a.versioned().version))
            .collect(),
    }
}

/// `GET /metrics`.
pub async fn handler(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |p| p.0 .0.ip());
    let client = state.config().trusted_proxies.client(peer, &headers);
    if !client.is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "metrics are served to loopback clients only\n",
        )
            .into_response();
    }
    let text = state.metrics().render(&snapshot(&state));
    let mut response = text.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Successful logins count through their app's cached series, refused ones by code:
    /// the exposition is the same either way.
    #[test]
    fn logins_count_by_app_and_code() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.login(Some(7), 0);
        }
        m.login(Some(8), 0);
        m.login(Some(7), 70001);
        m.login(None, 70020);
        let text = m.render(&Snapshot::default());
        for line in [
            r#"timd_logins_total{app="7",code="0"} 3"#,
            r#"timd_logins_total{app="8",code="0"} 1"#,
            r#"timd_logins_total{app="7",code="70001"} 1"#,
            r#"timd_logins_total{app="unknown",code="70020"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
