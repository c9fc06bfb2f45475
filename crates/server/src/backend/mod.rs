//! Where decisions live: the one seam between the server (gateway, REST API, demo, metrics)
//! and its two modes. Callers never ask which mode runs; each decision stays atomic where
//! its data lives (the embedded registry's user lock and SQLite, or one Lua script in Redis).
//!
//! - [`Embedded`] (`embedded.rs`): one process, sessions in memory, SQLite under
//!   `--data-dir`.
//! - Cluster (`cluster/`): several nodes on Redis (`--redis`), no local store.
//!
//! The behaviour suite (`tests/backend_suite.rs`) runs the same test bodies against both.

pub mod embedded;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tim_proto::Platform;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use embedded::Embedded;

use crate::apps::{App, Apps, Versioned};
use crate::callbacks::{Prepared, Sink};
use crate::cluster::{Cluster, ClusterError, ClusterMetrics};
use crate::config::Config;
use crate::events::{Events, MinuteCount};
use crate::policy::{LoginPolicy, LoginSettings};
use crate::session::{InstanceInfo, KickRecord, NewSession, Outbox, ResumeRefused};
use crate::store::{SettingsChange, StoreError};
use crate::ticket::TicketClaims;

/// Settings changes kept in an app's history.
pub const SETTINGS_HISTORY_KEPT: usize = 1000;

/// Why a backend could not decide. Nothing was changed unless said otherwise.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Cluster mode: Redis did not answer (down, unreachable, too slow). Retry later.
    #[error("session store unreachable: {0}")]
    Unavailable(String),
    /// Embedded mode: the SQLite store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ClusterError> for BackendError {
    fn from(e: ClusterError) -> Self {
        BackendError::Unavailable(e.to_string())
    }
}

/// An admitted login.
#[derive(Debug)]
pub struct Admission {
    pub info: InstanceInfo,
    /// Instances kicked to make room (on any node).
    pub kicked: usize,
    /// Their platforms (the callback's `KickedDevice`).
    pub kicked_platforms: Vec<Platform>,
    /// Whether this login created the account.
    pub new_account: bool,
    /// Whether the decision stored its State.StateChange event itself (a cluster script
    /// with the app's callback on): then the caller does not.
    pub reported: bool,
}

/// What a login decided.
#[derive(Debug)]
pub enum LoginDecision {
    Admitted(Admission),
    /// The UserSig was issued at or before the user's last REST kick (70001).
    Revoked,
}

/// What a renewal decided.
#[derive(Debug)]
pub enum Renewal {
    /// The session runs on the new UserSig.
    Renewed(InstanceInfo),
    /// No longer registered (kicked meanwhile: the kick is on its way to the socket).
    Gone,
    /// The new UserSig was issued at or before the user's last REST kick (70001); the
    /// session goes on with the UserSig it has.
    Revoked,
}

/// Why a resume did not take its slot back.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("resume refused: {0:?}")]
    Refused(ResumeRefused),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<ClusterError> for ResumeError {
    fn from(e: ClusterError) -> Self {
        ResumeError::Backend(e.into())
    }
}

/// A `set_login_settings` call: the fields it changes (the others stay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsUpdate {
    pub web_instances: Option<u8>,
    pub platform_instances: Option<u8>,
    pub policy: Option<LoginPolicy>,
}

impl SettingsUpdate {
    /// `current` with this update's fields.
    pub fn applied_to(&self, current: LoginSettings) -> LoginSettings {
        LoginSettings {
            web_instances: self.web_instances.unwrap_or(current.web_instances),
            platform_instances: self
                .platform_instances
                .unwrap_or(current.platform_instances),
            policy: self.policy.unwrap_or(current.policy),
        }
    }
}

/// The sizes of what traffic grows, for `/metrics` and the soak bench.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Instances holding a slot here (connected or waiting for a resume).
    pub online: usize,
    pub per_platform: Vec<(Platform, usize)>,
    /// Each internal map's length, by name.
    pub entries: Vec<(&'static str, usize)>,
}

/// Sessions per platform, (attached, away) each, in `Platform::ALL`'s order.
pub type PlatformCounts = [(usize, usize); Platform::ALL.len()];

/// Adds one session on `platform` to `counts`.
pub fn count_in(counts: &mut PlatformCounts, platform: Platform, attached: bool) {
    if let Some(i) = Platform::ALL.iter().position(|p| *p == platform) {
        if attached {
            counts[i].0 += 1;
        } else {
            counts[i].1 += 1;
        }
    }
}

/// One node's share of an app's sessions (embedded mode: the one process, node `""`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOnline {
    pub node: String,
    pub counts: PlatformCounts,
}

/// An app's sessions holding a slot: per platform, in total, and per node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnlineSummary {
    pub platforms: PlatformCounts,
    pub nodes: Vec<NodeOnline>,
}

impl OnlineSummary {
    /// The nodes' shares added up.
    pub fn sum(nodes: Vec<NodeOnline>) -> OnlineSummary {
        let mut platforms = PlatformCounts::default();
        for n in &nodes {
            for (total, (attached, away)) in platforms.iter_mut().zip(n.counts) {
                total.0 += attached;
                total.1 += away;
            }
        }
        OnlineSummary { platforms, nodes }
    }
}

/// The seam: embedded or cluster.
pub enum Backend {
    Embedded(Embedded),
    Cluster(Arc<Cluster>),
}

impl Backend {
    /// Opens the backend `config` asks for and loads every app's settings from it.
    pub async fn open(
        config: &Config,
        apps: &Apps,
        metrics: ClusterMetrics,
    ) -> Result<Backend, OpenError> {
        match &config.cluster {
            None => Ok(Backend::Embedded(Embedded::open(config, apps)?)),
            Some(settings) => {
                let cluster = Cluster::connect(settings.clone(), metrics).await?;
                for app in apps.iter() {
                    let stored = cluster.load_settings(app, config.settings_origin()).await?;
                    note_stored_settings(app, stored, config.settings_origin());
                }
                Ok(Backend::Cluster(cluster))
            }
        }
    }

    /// This node's id in the cluster (for the start-up log line); `None` in embedded mode.
    pub fn node(&self) -> Option<String> {
        self.cluster().map(|c| c.node())
    }

    /// Where State.StateChange callback events wait (`callbacks/outbox.rs`): the SQLite
    /// store, or the cluster's Redis.
    pub fn callback_outbox(&self) -> crate::callbacks::Outbox {
        match self {
            Backend::Embedded(e) => crate::callbacks::Outbox::Embedded(e.store().clone()),
            Backend::Cluster(c) => crate::callbacks::Outbox::Cluster(Arc::clone(c)),
        }
    }

    /// Cluster mode's membership, for tests that look at a node's held sessions; `None` in
    /// embedded mode. The server itself never asks.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Backend::Cluster(c) => Some(c),
            Backend::Embedded(_) => None,
        }
    }

    /// Starts the background work (sweeps; in cluster mode the node channel, lease renewals
    /// and settings checks); it ends when `shutdown` is cancelled.
    pub fn spawn_tasks(
        self: &Arc<Self>,
        apps: &Arc<Apps>,
        shutdown: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        match &**self {
            Backend::Embedded(_) => {
                let backend = Arc::clone(self);
                vec![tokio::spawn(async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tick.tick() => {}
                        }
                        if let Backend::Embedded(e) = &*backend {
                            let dropped = e.sweep(Instant::now());
                            if dropped > 0 {
                                tracing::debug!(dropped, "swept away instances");
                            }
                        }
                    }
                })]
            }
            Backend::Cluster(c) => {
                tracing::info!(
                    node = %c.node(),
                    redis = %c.settings().redacted_url(),
                    lease_ms = c.settings().lease_ms,
                    "cluster mode"
                );
                crate::cluster::tasks::spawn(Arc::clone(c), Arc::clone(apps), shutdown)
            }
        }
    }

    /// A login whose UserSig verified: the revocation check, the account and the policy,
    /// as one decision.
    pub async fn login(&self, app: &App, new: NewSession) -> Result<LoginDecision, BackendError> {
        match self {
            Backend::Embedded(e) => e.login(app, new).await,
            Backend::Cluster(c) => Ok(c.login(new, &app.settings()).await?),
        }
    }

    /// A resume with a verified ticket: its own slot back, or why not. Never kicks.
    pub async fn resume(
        &self,
        app: &App,
        claims: &TicketClaims,
        outbox: Outbox,
        client: Option<IpAddr>,
    ) -> Result<(InstanceInfo, bool), ResumeError> {
        match self {
            Backend::Embedded(e) => e.resume(app, claims, outbox).map(|i| (i, false)),
            Backend::Cluster(c) => c.resume(claims, outbox, &app.settings(), client).await,
        }
    }

    /// A renewal with a verified UserSig, checked against the user's last REST kick
    /// atomically with the change. An error: not renewed (the session goes on with its
    /// UserSig; the client retries).
    pub async fn renew(
        &self,
        info: &InstanceInfo,
        expire_at: u64,
        sig_time: u64,
    ) -> Result<Renewal, BackendError> {
        match self {
            // A kick after this check kicks the session itself (it is online).
            Backend::Embedded(e) => Ok(match e.kicked_at(info.app, &info.user) {
                Some(k) if sig_time <= k => Renewal::Revoked,
                _ => match e.renew(info.app, &info.user, info.session, expire_at, sig_time) {
                    Some(info) => Renewal::Renewed(info),
                    None => Renewal::Gone,
                },
            }),
            Backend::Cluster(c) => Ok(c.renew(info.session, expire_at, sig_time).await?),
        }
    }

    /// A logout: the session ends and its tickets die. `Ok(false)`: it was no longer
    /// registered. An error: the end may not be durable. With it, whether the decision
    /// stored its State.StateChange event itself, `event` (embedded: in the end's own store
    /// transaction) or its script's (cluster), and how many old events the cap dropped then;
    /// `None`: the caller stores it.
    pub async fn logout(
        &self,
        info: &InstanceInfo,
        client: Option<IpAddr>,
        event: Option<Prepared>,
    ) -> Result<(bool, Option<u64>), BackendError> {
        match self {
            Backend::Embedded(e) => e.logout(info.app, &info.user, info.session, event).await,
            Backend::Cluster(c) => {
                let (ours, reported) = c.logout(info.session, client).await?;
                Ok((ours, reported.then_some(0)))
            }
        }
    }

    /// The socket closed without a logout: the slot is held for a resume until `until`.
    pub fn detach(&self, info: &InstanceInfo, until: Instant) {
        match self {
            Backend::Embedded(e) => e.detach(info.app, &info.user, info.session, until),
            Backend::Cluster(c) => c.detach(info.session, until),
        }
    }

    /// The session's UserSig ran out while its socket was up: kicked `userSigExpired`. An
    /// error: the end is not recorded (in cluster mode the slot frees when the lease, no
    /// longer renewed, runs out).
    /// With it, whether the decision stored its State.StateChange event itself.
    pub async fn expire(
        &self,
        info: &InstanceInfo,
        client: Option<IpAddr>,
    ) -> Result<bool, BackendError> {
        match self {
            Backend::Embedded(e) => {
                e.expire(info.app, &info.user, info.session);
                Ok(false)
            }
            Backend::Cluster(c) => Ok(c.expire(info.session, client).await?),
        }
    }

    /// REST `kick`: records the revocation time `at` durably, then kicks every instance of
    /// `user` wherever it is. `None` if the account does not exist. The State.StateChange
    /// events of the connected instances it ends are stored with the kick time (embedded:
    /// made with `sink`, the app's if it has a callback; cluster: by `kick_user.lua`).
    pub async fn kick_user(
        &self,
        app: u32,
        user: &str,
        at: u64,
        sink: Option<Sink>,
    ) -> Result<Option<usize>, BackendError> {
        match self {
            Backend::Embedded(e) => e.kick_user(app, user, at, sink).await,
            Backend::Cluster(c) => Ok(c.kick_user(app, user, at, false).await?),
        }
    }

    /// REST `account_delete`: deletes each of `users` that exists, revoking its UserSigs
    /// up to `at` and kicking its instances. For each, `None` if it did not exist, else
    /// how many instances were online. Their events as [`Backend::kick_user`]'s.
    pub async fn delete_accounts(
        &self,
        app: u32,
        users: &[String],
        at: u64,
        sink: Option<Sink>,
    ) -> Result<Vec<Option<usize>>, BackendError> {
        match self {
            Backend::Embedded(e) => e.delete_accounts(app, users, at, sink).await,
            Backend::Cluster(c) => Ok(c.delete_accounts(app, users, at).await?),
        }
    }

    /// Registers `users`; returns how many were new.
    pub async fn import(&self, app: u32, users: &[String]) -> Result<usize, BackendError> {
        match self {
            Backend::Embedded(e) => e.import(app, users).await,
            Backend::Cluster(c) => Ok(c.import(app, users).await?),
        }
    }

    /// Which of `users` have an account.
    pub async fn accounts_exist(
        &self,
        app: u32,
        users: &[String],
    ) -> Result<Vec<bool>, BackendError> {
        match self {
            Backend::Embedded(e) => e.accounts_exist(app, users).await,
            Backend::Cluster(c) => Ok(c.accounts_exist(app, users).await?),
        }
    }

    /// The platforms of each user's connected instances, earliest login first.
    pub async fn online(
        &self,
        app: u32,
        users: &[String],
    ) -> Result<Vec<Vec<Platform>>, BackendError> {
        match self {
            Backend::Embedded(e) => Ok(users
                .iter()
                .map(|user| {
                    e.instances(app, user)
                        .into_iter()
                        .filter(|i| i.attached)
                        .map(|i| i.platform)
                        .collect()
                })
                .collect()),
            Backend::Cluster(c) => Ok(c.online(app, users).await?),
        }
    }

    /// `user`'s instances holding a slot (connected or away), earliest login first.
    pub async fn instances(&self, app: u32, user: &str) -> Result<Vec<InstanceInfo>, BackendError> {
        match self {
            Backend::Embedded(e) => Ok(e.instances(app, user)),
            Backend::Cluster(c) => Ok(c.instances(app, user).await?),
        }
    }

    /// `user`'s recent kicks, oldest first.
    pub async fn recent_kicks(
        &self,
        app: u32,
        user: &str,
    ) -> Result<Vec<KickRecord>, BackendError> {
        match self {
            Backend::Embedded(e) => Ok(e.recent_kicks(app, user)),
            Backend::Cluster(c) => Ok(c.recent_kicks(app, user).await?),
        }
    }

    /// `user`'s last REST kick or deletion (unix seconds).
    pub async fn kicked_at(&self, app: u32, user: &str) -> Result<Option<u64>, BackendError> {
        match self {
            Backend::Embedded(e) => Ok(e.kicked_at(app, user)),
            Backend::Cluster(c) => Ok(c.kicked_at(app, user).await?),
        }
    }

    /// The app's stored login settings (what every node decides with once it answers).
    pub async fn settings(&self, app: &App) -> Result<Versioned, BackendError> {
        match self {
            Backend::Embedded(_) => Ok(app.versioned()),
            Backend::Cluster(c) => Ok(c
                .stored_settings(app.sdkappid)
                .await?
                .unwrap_or_else(|| app.versioned())),
        }
    }

    /// A login-settings change by `admin`; with `apply_now`, what the new settings no longer
    /// allow is kicked at once, each connected instance kicked reported `Logout`/`Unregister`
    /// by `RESTAPI` (embedded: made with `sink`; cluster: by `enforce.lua`). In force on
    /// every node when this returns.
    pub async fn set_settings(
        &self,
        apps: &Apps,
        app: &App,
        change: SettingsUpdate,
        admin: &str,
        apply_now: bool,
        sink: Option<Sink>,
    ) -> Result<Versioned, BackendError> {
        match self {
            Backend::Embedded(e) => e.set_settings(app, change, admin, apply_now, sink).await,
            Backend::Cluster(c) => Ok(c.set_settings(apps, app, change, admin, apply_now).await?),
        }
    }

    /// The app's settings changes, newest first.
    pub async fn settings_history(&self, app: u32) -> Result<Vec<SettingsChange>, BackendError> {
        match self {
            Backend::Embedded(e) => e.settings_history(app, SETTINGS_HISTORY_KEPT).await,
            Backend::Cluster(c) => Ok(c.settings_history(app, SETTINGS_HISTORY_KEPT).await?),
        }
    }

    /// `app`'s sessions per platform (connected, away), the whole cluster's in cluster mode
    /// (each node's share at most a couple of seconds old, this node's live).
    pub async fn online_summary(&self, app: u32) -> Result<OnlineSummary, BackendError> {
        match self {
            Backend::Embedded(e) => Ok(OnlineSummary::sum(vec![NodeOnline {
                node: String::new(),
                counts: e.registry(app).platform_counts(),
            }])),
            Backend::Cluster(c) => Ok(c.online_summary(app).await?),
        }
    }

    /// `app`'s logins and kicks per minute over the last hour, oldest first: what `events`
    /// counted (embedded mode), the cluster's from Redis (cluster mode).
    pub async fn event_counts(
        &self,
        app: u32,
        events: &Events,
    ) -> Result<Vec<MinuteCount>, BackendError> {
        match self {
            Backend::Embedded(_) => Ok(events.local_counts(app, crate::clock::unix_ms())),
            Backend::Cluster(c) => Ok(c.event_counts(app).await?),
        }
    }

    /// Starts relaying `events` between the nodes (cluster mode; nothing to do embedded):
    /// every node's console then shows the cluster's events.
    pub fn spawn_event_relay(
        &self,
        events: &Arc<Events>,
        shutdown: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        match self {
            Backend::Embedded(_) => Vec::new(),
            Backend::Cluster(c) => c.spawn_console(events, shutdown),
        }
    }

    /// What `/metrics` shows of the sessions this process holds.
    pub fn gauges(&self) -> Gauges {
        match self {
            Backend::Embedded(e) => {
                let (sizes, kicks) = e.sizes();
                Gauges {
                    online: e.online_count(),
                    per_platform: e.per_platform(),
                    entries: vec![
                        ("users", sizes.users),
                        ("away", sizes.away),
                        ("tombstones", sizes.tombstones),
                        ("ended", sizes.ended),
                        ("kick_times", kicks),
                        ("known_accounts", e.known_accounts()),
                    ],
                }
            }
            Backend::Cluster(c) => {
                let held = c.held();
                Gauges {
                    online: held.len(),
                    per_platform: held.per_platform(),
                    entries: vec![
                        ("held", held.len()),
                        ("held_away", held.away()),
                        ("held_early_notices", held.early_notices()),
                        ("unwritten_ends", held.unwritten_ends().len()),
                        ("orphans", held.orphans().len()),
                        ("deferred_writes", c.deferred_len()),
                    ],
                }
            }
        }
    }
}

/// Who stores an app's settings when its configuration (not an admin) made them.
pub const CONFIG_ORIGINS: [&str; 2] = ["(flags)", "(apps file)"];

/// Whether a settings change was made by the configuration (a start), not by an admin.
pub fn made_by_config(who: &str) -> bool {
    CONFIG_ORIGINS.contains(&who)
}

/// Logs which login settings apply to `app` at start, and why, when the stored ones differ
/// from its configured initial ones: a restart never silently undoes an API change.
pub(crate) fn note_stored_settings(app: &App, stored: Versioned, origin: &str) {
    let initial = app.initial_settings();
    if stored.settings != initial {
        tracing::warn!(
            app = app.sdkappid,
            version = stored.version,
            stored = ?stored.settings,
            configured = ?initial,
            "login settings: the stored ones apply: an admin changed them through \
             set_login_settings, and a restart never undoes that; the {origin} values apply \
             again only once an admin sets them (set_login_settings)"
        );
    } else {
        tracing::info!(app = app.sdkappid, version = stored.version, settings = ?stored.settings, "login settings");
    }
}

/// Why the backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] ClusterError),
}
