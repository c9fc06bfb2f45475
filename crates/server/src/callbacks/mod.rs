//! Tencent's **State.StateChange** callback: the app's server hears who logs in, logs
//! out, drops off and is kicked (`docs/callbacks.md`).
//!
//! - [`Callbacks`] is what the socket tasks call at the emission points (`gateway.rs`): it
//!   turns what happened into a [`StateChange`] and stores it in the app's durable outbox
//!   before the client hears the answer.
//! - `outbox.rs`: the outbox behind the backend seam (a SQLite table of the embedded store,
//!   or a Redis stream per app in cluster mode, where the decision scripts store the events
//!   of what they decide themselves: the backend then says so, e.g. `Admission::reported`,
//!   and the socket task stores nothing).
//! - `deliver.rs`: one deliverer per app reads the outbox oldest first and POSTs each event,
//!   a user's next event only once the previous one was delivered, users in parallel,
//!   retrying with backoff; an event leaves the outbox once the receiver accepted it.
//! - `request.rs`: the request exactly as Tencent sends it (query, Sign, body).
//! - `http.rs`: the small HTTP/1 client (hyper), bounded in time and in what it reads.

pub mod deliver;
pub mod http;
pub mod outbox;
pub mod request;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tim_proto::Platform;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::apps::AppConfig;
use crate::metrics::CallbackMetrics;
use crate::session::InstanceInfo;
pub use outbox::Outbox;

/// How long the receiver has to answer one request, by default.
pub const DEFAULT_TIMEOUT_MS: u32 = 2_000;
/// Requests in flight per app at most, by default.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 32;
/// Events waiting per app at most, by default; beyond it the oldest are dropped.
pub const DEFAULT_QUEUE_CAP: u32 = 100_000;

/// Where one app's callbacks go.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackTarget {
    /// `http://host[:port]/path[?query]`.
    pub url: String,
    /// The callback authentication token (`Sign`); never logged.
    pub token: Option<String>,
}

impl std::fmt::Debug for CallbackTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackTarget")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl CallbackTarget {
    /// Checks the URL: `http://` with a host (https is not supported: put a TLS proxy on
    /// the receiver's side, or use a loopback / private-network receiver).
    pub fn validate(&self) -> Result<(), String> {
        http::Endpoint::parse(&self.url).map(|_| ())
    }
}

/// How every app's callbacks are delivered (`--callback-timeout-ms`,
/// `--callback-max-in-flight`, `--callback-queue-cap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackSettings {
    pub timeout_ms: u32,
    pub max_in_flight: u32,
    pub queue_cap: u32,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        CallbackSettings {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            queue_cap: DEFAULT_QUEUE_CAP,
        }
    }
}

impl CallbackSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("--callback-timeout-ms must be between 100 and 60000".into());
        }
        if !(1..=1024).contains(&self.max_in_flight) {
            return Err("--callback-max-in-flight must be between 1 and 1024".into());
        }
        if !(100..=10_000_000).contains(&self.queue_cap) {
            return Err("--callback-queue-cap must be between 100 and 10000000".into());
        }
        Ok(())
    }
}

/// Tencent's `Info.Action`.
pub const LOGIN: &str = "Login";
pub const LOGOUT: &str = "Logout";
pub const DISCONNECT: &str = "Disconnect";

/// One queued event, as both outboxes store it (JSON; short names: a login storm writes
/// many). The cluster's Lua scripts write the same shape (`prelude.lua`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The `EventID`, when the event carries its own: one a script made (`prelude.lua`'s
    /// `report`), whose write may be made twice. Otherwise (empty) the outbox
    /// entry's id names it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `To_Account`.
    pub u: String,
    /// `Action`: Login, Logout, Disconnect.
    pub a: String,
    /// `Reason`: Register, Unregister, LinkClose, TimeOut.
    pub r: String,
    /// The instance's platform as timd names it (`iPhone` is Tencent's `iOS`).
    pub p: String,
    /// The client's address (`ClientIP`); empty when no client acted (a dead node).
    #[serde(default)]
    pub ip: String,
    /// Who acted (`OptPlatform`): the instance's platform, `RESTAPI`, or `Unknown`.
    pub op: String,
    /// When it happened (`EventTime`), unix ms.
    pub t: u64,
    /// Login: the platforms of the instances it kicked (`KickedDevice`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub k: Vec<String>,
}

/// An event ready for an app's outbox (`Callbacks::prepare`): its JSON, when it happened
/// (unix ms), and the app's cap.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub app: u32,
    pub json: String,
    pub t: u64,
    pub cap: u32,
}

/// One app's events as a decision makes them itself, to store them in the decision's own
/// store transaction (`Callbacks::sink`): the event's shape and the app's cap, then the
/// counters and the deliverer's wake-up once stored.
#[derive(Clone)]
pub struct Sink {
    pub app: u32,
    pub cap: u32,
    metrics: CallbackMetrics,
    wake: Option<Arc<Notify>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("app", &self.app)
            .field("cap", &self.cap)
            .finish()
    }
}

impl Sink {
    /// The event of what happened to `info`'s session, ready for the outbox (`None` only
    /// if it cannot be written as JSON).
    pub fn prepare(
        &self,
        info: &InstanceInfo,
        change: Change<'_>,
        client: Option<IpAddr>,
    ) -> Option<Prepared> {
        let event = change.of(info, client, crate::clock::unix_ms());
        Some(Prepared {
            app: self.app,
            json: serde_json::to_string(&event).ok()?,
            t: event.t,
            cap: self.cap,
        })
    }

    /// After events were stored (how many old ones the cap dropped) or not: the counters,
    /// and the deliverer woken.
    pub fn stored(&self, stored: Result<u64, String>) {
        match stored {
            Ok(dropped) => {
                if dropped > 0 {
                    self.metrics.dropped("cap", dropped);
                    tracing::warn!(
                        app = self.app,
                        dropped,
                        cap = self.cap,
                        "callback queue full: the oldest events were dropped"
                    );
                }
                if let Some(w) = &self.wake {
                    w.notify_one();
                }
            }
            Err(_) => self.metrics.dropped("store", 1),
        }
    }
}

/// What happened to a session, as the emission points say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// A login (kicking instances on these platforms) or a resume: `Login`/`Register`.
    Login(&'a [Platform]),
    /// A logout, a re-login on the same socket, `destroy`: `Logout`/`Unregister`.
    Logout,
    /// A REST call ended the session (a `kick`, an `account_delete`, a
    /// `set_login_settings … ApplyNow`): `Logout`/`Unregister`, by `RESTAPI`.
    RestKick,
    /// The UserSig ran out while connected: `Logout`/`Unregister` (the session cannot come
    /// back; the client must log in with a new UserSig).
    Expired,
    /// The socket closed without a logout: `Disconnect`/`LinkClose`.
    LinkClose,
    /// The heartbeat was lost: `Disconnect`/`TimeOut`.
    TimeOut,
}

impl Change<'_> {
    /// The stored event for `info`, acted from `client`.
    pub fn of(&self, info: &InstanceInfo, client: Option<IpAddr>, now_ms: u64) -> StateChange {
        let (a, r, op) = match self {
            Change::Login(_) => (LOGIN, "Register", info.platform.as_str()),
            Change::Logout => (LOGOUT, "Unregister", info.platform.as_str()),
            Change::RestKick => (LOGOUT, "Unregister", "RESTAPI"),
            Change::Expired => (LOGOUT, "Unregister", "Unknown"),
            Change::LinkClose => (DISCONNECT, "LinkClose", info.platform.as_str()),
            Change::TimeOut => (DISCONNECT, "TimeOut", "Unknown"),
        };
        StateChange {
            id: String::new(),
            u: info.user.clone(),
            a: a.into(),
            r: r.into(),
            p: info.platform.as_str().into(),
            ip: client.map(|c| c.to_string()).unwrap_or_default(),
            op: op.into(),
            t: now_ms,
            k: match self {
                Change::Login(kicked) => kicked.iter().map(|p| p.as_str().to_owned()).collect(),
                _ => Vec::new(),
            },
        }
    }
}

/// Tencent's name of a platform (`iPhone` is `iOS`; others are the same).
pub fn tencent_platform(p: &str) -> &str {
    match p {
        "iPhone" => "iOS",
        other => other,
    }
}

/// The apps with a callback, their outbox, and the deliverers.
pub struct Callbacks {
    targets: HashMap<u32, CallbackTarget>,
    settings: CallbackSettings,
    outbox: Outbox,
    metrics: CallbackMetrics,
    /// Wakes each app's deliverer when this process queued something.
    wake: HashMap<u32, Arc<Notify>>,
}

impl Callbacks {
    pub fn new(
        apps: &[AppConfig],
        settings: CallbackSettings,
        outbox: Outbox,
        metrics: CallbackMetrics,
    ) -> Callbacks {
        let targets: HashMap<u32, CallbackTarget> = apps
            .iter()
            .filter_map(|a| a.callback.clone().map(|t| (a.sdkappid, t)))
            .collect();
        let wake = targets
            .keys()
            .map(|app| (*app, Arc::new(Notify::new())))
            .collect();
        Callbacks {
            targets,
            settings,
            outbox,
            metrics,
            wake,
        }
    }

    /// Whether `app` has a callback.
    pub fn enabled(&self, app: u32) -> bool {
        self.targets.contains_key(&app)
    }

    /// The event of what happened to `info`'s session, ready for the app's outbox, if the
    /// app has a callback: for a decision that stores it in its own transaction (embedded
    /// logout: `Backend::logout`), then [`Callbacks::stored`].
    pub fn prepare(
        &self,
        info: &InstanceInfo,
        change: Change<'_>,
        client: Option<IpAddr>,
    ) -> Option<Prepared> {
        self.sink(info.app)?.prepare(info, change, client)
    }

    /// Where a decision that stores its own events (in its own store transaction: an
    /// embedded REST kick, account deletion or `ApplyNow`) makes them, if `app` has a
    /// callback.
    pub fn sink(&self, app: u32) -> Option<Sink> {
        if !self.enabled(app) {
            return None;
        }
        Some(Sink {
            app,
            cap: self.settings.queue_cap,
            metrics: self.metrics.clone(),
            wake: self.wake.get(&app).cloned(),
        })
    }

    /// Stores what happened to `info`'s session in its app's outbox (if it has a callback),
    /// durably, before returning. Never fails the caller: a store that cannot take it is
    /// logged and counted (`timd_callbacks_dropped{why="store"}`), the login goes on.
    pub async fn report(&self, info: &InstanceInfo, change: Change<'_>, client: Option<IpAddr>) {
        if !self.enabled(info.app) {
            return;
        }
        let event = change.of(info, client, crate::clock::unix_ms());
        let stored = self
            .outbox
            .enqueue(info.app, &event, self.settings.queue_cap)
            .await;
        if let Err(e) = &stored {
            tracing::error!(app = info.app, user = %info.user, action = %event.a, error = %e,
                "callback event not stored: it will not be sent");
        }
        self.stored(info.app, stored);
    }

    /// After an event of `app` was stored (how many old ones the cap dropped) or not: the
    /// counters, and the deliverer woken.
    pub fn stored(&self, app: u32, stored: Result<u64, String>) {
        if let Some(sink) = self.sink(app) {
            sink.stored(stored);
        } else if stored.is_err() {
            self.metrics.dropped("store", 1);
        }
    }

    /// Tells the backend, before it decides anything, which apps' events its decisions store
    /// themselves (cluster mode: the scripts' view). Without it a node's first decisions
    /// were stored by the node after its script, and an `ApplyNow` kick then (which the
    /// node cannot tell from a login's kick) went unreported.
    pub fn announce(&self) {
        for app in self.targets.keys() {
            self.outbox.announce(*app);
        }
    }

    /// Starts one deliverer per app with a callback; they stop when `shutdown` is cancelled
    /// (what is not delivered stays in the outbox for the next start, or another node).
    pub fn spawn(&self, node: Option<String>, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        self.targets
            .iter()
            .filter_map(|(app, target)| {
                let endpoint = match http::Endpoint::parse(&target.url) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(app, error = %e, "callback URL unusable: no callbacks");
                        return None;
                    }
                };
                let deliverer = deliver::Deliverer {
                    app: *app,
                    endpoint,
                    token: target.token.clone(),
                    settings: self.settings,
                    outbox: self.outbox.clone(),
                    metrics: self.metrics.clone(),
                    wake: Arc::clone(&self.wake[app]),
                    node: node.clone(),
                };
                tracing::info!(app, url = %target.url, signed = target.token.is_some(), "State.StateChange callbacks on");
                Some(tokio::spawn(deliverer.run(shutdown.clone())))
            })
            .collect()
    }

    pub fn metrics(&self) -> &CallbackMetrics {
        &self.metrics
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn apps(&self) -> impl Iterator<Item = u32> + '_ {
        self.targets.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    fn info() -> InstanceInfo {
        InstanceInfo {
            session: SessionId(1),
            app: 7,
            user: "alice".into(),
            instance: "i1".into(),
            platform: Platform::IPhone,
            since_ms: 1,
            expire_at: 0,
            sig_time: 0,
            attached: true,
            node: String::new(),
        }
    }

    #[test]
    fn changes_map_to_tencents_pairs() {
        let ip = Some("10.0.0.1".parse().unwrap());
        let e = Change::Login(&[Platform::Web, Platform::IPhone]).of(&info(), ip, 5);
        assert_eq!(
            (e.a.as_str(), e.r.as_str(), e.op.as_str()),
            ("Login", "Register", "iPhone")
        );
        assert_eq!(e.k, ["Web", "iPhone"]);
        assert_eq!(e.ip, "10.0.0.1");
        let pairs = [
            (Change::Logout, "Logout", "Unregister"),
            (Change::RestKick, "Logout", "Unregister"),
            (Change::Expired, "Logout", "Unregister"),
            (Change::LinkClose, "Disconnect", "LinkClose"),
            (Change::TimeOut, "Disconnect", "TimeOut"),
        ];
        for (c, a, r) in pairs {
            let e = c.of(&info(), None, 5);
            assert_eq!((e.a.as_str(), e.r.as_str()), (a, r), "{c:?}");
            assert!(e.k.is_empty());
        }
        assert_eq!(Change::RestKick.of(&info(), None, 5).op, "RESTAPI");
        assert_eq!(tencent_platform("iPhone"), "iOS");
        assert_eq!(tencent_platform("Web"), "Web");
    }

    #[test]
    fn stored_events_round_trip_and_the_lua_shape_parses() {
        let e = Change::Login(&[Platform::Web]).of(&info(), None, 5);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<StateChange>(&json).unwrap(), e);
        // What prelude.lua writes for a dead node's session (cjson, no `k`).
        let lua =
            r#"{"u":"bob","a":"Disconnect","r":"TimeOut","p":"Web","op":"Unknown","ip":"","t":17}"#;
        let e: StateChange = serde_json::from_str(lua).unwrap();
        assert_eq!((e.u.as_str(), e.r.as_str(), e.t), ("bob", "TimeOut", 17));
    }

    #[test]
    fn settings_are_bounded() {
        assert!(CallbackSettings::default().validate().is_ok());
        for bad in [
            CallbackSettings {
                timeout_ms: 0,
                ..Default::default()
            },
            CallbackSettings {
                max_in_flight: 0,
                ..Default::default()
            },
            CallbackSettings {
                queue_cap: 1,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
        let t = CallbackTarget {
            url: "https://x/".into(),
            token: Some("secret".into()),
        };
        assert!(t.validate().is_err());
        assert!(!format!("{t:?}").contains("secret"));
    }
}
