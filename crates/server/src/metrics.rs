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
use prometheus_client::registry::Registry;

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
        Metrics {
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

    pub fn rest_rate_limited(&self) {
        self.rest_rate_limited.inc();
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, connections: usize, online: usize) -> String {
        self.connections.set(connections as i64);
        self.online.set(online as i64);
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
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
    let text = state
        .metrics()
        .render(state.limits().open(), state.registry().online_count());
    let mut response = text.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
