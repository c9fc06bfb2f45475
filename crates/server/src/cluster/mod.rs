//! Cluster mode (`timd serve --redis URL`): several nodes share sessions, accounts and kick
//! times through Redis, with every invariant of the embedded registry kept across nodes.
//!
//! - Every decision (login, resume, logout, expiry, REST kick or delete) is **one Lua
//!   script** on the user's keys (`lua/`, one hash tag): it admits, evicts the earliest
//!   beyond each limit by the user's fencing counter, leaves tombstones and hands each kick
//!   for another node back to the deciding node. Nodes never read-modify-write.
//! - Liveness is per **node** (`liveness.rs`): a node renews one lease for all its
//!   sessions every sixth of the lease, one script per node; slots name their node, and a
//!   slot whose node is dead is free. Idle sessions cost Redis nothing.
//! - A kick for a session on another node is an entry of that node's stream, appended by
//!   the deciding node right after its script (a script touches one Redis Cluster slot; the
//!   notice waits in the user's outbox until written: [`Cluster::write_deferred`]) and read
//!   with a cursor: nothing is lost in transit.
//! - The Redis behind it is one primary, the primary Sentinel names, or a Redis Cluster
//!   (`primary.rs`): callers never ask which.
//! - A node that dies stops renewing: its slots are free within one lease, and its
//!   clients resume on another node with their tickets. A node that could not renew in
//!   time fences itself (closes its sessions, joins again under a new id).
//! - Redis unreachable: logins answer 70169 (retry), resumes close 1013 (the SDK
//!   reconnects with backoff), connected sessions stay up for the node lease; when Redis
//!   lost data, the node registers again what it holds.
//!
//! `held.rs` is the node-local part: which socket each held session's kick goes to.

pub mod callbacks;
pub mod console;
pub mod held;
pub mod keys;
pub mod liveness;
pub mod primary;
pub mod scripts;
mod sentinel_watch;
mod subscription;
pub mod tasks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use redis::{AsyncCommands, ScriptInvocation, Value};
use tim_proto::Platform;

use crate::apps::{App, Apps, Versioned};
use crate::backend::SettingsUpdate;
use crate::backend::{Admission, LoginDecision, Renewal, ResumeError};
use crate::clock::{unix_ms as unix_now_ms, unix_secs as unix_now};
use crate::config::ClusterSettings;
use crate::policy::{LoginPolicy, LoginSettings};
use crate::session::{InstanceInfo, KickRecord, NewSession, Outbox, ResumeRefused, SessionId};
use crate::store::SettingsChange;
use crate::ticket::{TicketClaims, TICKET_LIFETIME_SECS};
use held::{HeldSessions, Notice};
use scripts::{
    array, int, kick_reason, local_notices, split_deferred, text, BadReply, Deferred, Scripts,
};

/// Longest a node waits for Redis before it answers "unavailable".
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Scripts one node has in flight at once. A reconnect storm (every session of a restarted
/// node resuming together) would otherwise send thousands at once: each then waits behind
/// the others, and with the node's CPU busy too, most ran past [`REDIS_TIMEOUT`] and were
/// refused with 1013, to come back seconds later (a 50,000-session storm took 42–120 s).
/// Queued here, each call's own round trip stays short.
pub const SCRIPTS_IN_FLIGHT: usize = 64;

/// How long a promise-keeping write waits for its replicas (`WAIT`): below
/// [`REDIS_TIMEOUT`], so the whole call still answers within it.
pub const WAIT_WITHIN: Duration = Duration::from_secs(1);

/// Longest a logout retries recording its end in Redis before it is answered with an
/// error (below the SDK's 3 s logout timeout, so the page hears the answer). The end is
/// then written on each node round until Redis has it.
pub const LOGOUT_WRITE_WITHIN: Duration = Duration::from_secs(2);

/// Writes to other slots (the two-step path) a node keeps retrying each round when Redis
/// did not take them at once; beyond it the oldest are dropped (their outbox markers stay in
/// Redis: the next script on the user, or the reaper, hands them back).
pub const DEFERRED_KEPT: usize = 10_000;

/// Longest a settings change waits for the live nodes to acknowledge it.
pub const SETTINGS_ACK_WAIT: Duration = Duration::from_secs(2);

/// Longest a script waits for its turn before the node answers "unavailable" (retry later).
pub const SCRIPT_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Why a cluster operation could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis did not answer (down, unreachable, too slow): retry later.
    #[error("session store unreachable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    BadReply(#[from] BadReply),
    /// This Redis is not fit for timd (said why, and what to change).
    #[error("{0}")]
    Unfit(String),
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        ClusterError::Unavailable(e.to_string())
    }
}

/// Metrics the cluster keeps (registered in `metrics.rs`).
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    pub redis_seconds: Option<Histogram>,
    pub renewals_ok: Counter,
    pub renewals_failed: Counter,
    pub renewals_gone: Counter,
    pub registered_again: Counter,
    pub reconciliations: Counter,
    pub channel_notices: Counter,
    pub fenced: Counter,
    pub nodes_reaped: Counter,
}

/// This node's membership in the cluster.
pub struct Cluster {
    /// The node id, its view of the live nodes, its node lease and stream cursor.
    live: std::sync::Mutex<liveness::Liveness>,
    /// Dead nodes the last round found, to reap.
    dead: std::sync::Mutex<Vec<String>>,
    /// Wakes the stream reader when the node id changed (a fence).
    stream_moved: tokio::sync::Notify,
    settings: ClusterSettings,
    /// The primary and the connections to it (followed through a Sentinel failover).
    redis: Arc<primary::Primary>,
    scripts: Scripts,
    held: HeldSessions,
    metrics: ClusterMetrics,
    /// Wakes the round loop at once (after a fence, or a resubscription to settings).
    reconcile: tokio::sync::Notify,
    /// Turns for scripts ([`SCRIPTS_IN_FLIGHT`]); fair, so the earliest caller goes first.
    in_flight: tokio::sync::Semaphore,
    /// Writes to other slots that scripts handed back and Redis did not take yet: retried
    /// each round ([`Self::write_ends`]), at most [`DEFERRED_KEPT`].
    deferred: std::sync::Mutex<std::collections::VecDeque<(u32, String, Vec<Deferred>)>>,
    /// The apps whose State.StateChange callback this node has on (`app,app,…`, sorted; set
    /// at start, `Callbacks::announce`), passed to every user script with the view: their
    /// scripts store their decisions' events and the sessions of dead nodes they meet
    /// (`callbacks.rs`).
    callbacks_on: std::sync::RwLock<(std::collections::BTreeSet<u32>, String)>,
}

impl Cluster {
    /// Connects to Redis (failing if it does not answer within [`REDIS_TIMEOUT`]) and picks
    /// this boot's node id.
    pub async fn connect(
        settings: ClusterSettings,
        metrics: ClusterMetrics,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let target =
            primary::Target::parse(&settings.redis_url).map_err(ClusterError::Unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let redis = primary::Primary::connect(target, config, REDIS_TIMEOUT * 2)
            .await
            .map_err(ClusterError::Unavailable)?;
        let cluster = Cluster {
            live: std::sync::Mutex::new(liveness::Liveness::new(settings.lease_ms)),
            dead: std::sync::Mutex::new(Vec::new()),
            stream_moved: tokio::sync::Notify::new(),
            settings,
            redis,
            scripts: Scripts::new(),
            held: HeldSessions::default(),
            metrics,
            reconcile: tokio::sync::Notify::new(),
            in_flight: tokio::sync::Semaphore::new(SCRIPTS_IN_FLIGHT),
            deferred: Default::default(),
            callbacks_on: Default::default(),
        };
        // One round trip now: a wrong password or database fails the start, not a login;
        // and the cluster's clock before the first decision.
        cluster.sync_clock().await?;
        cluster.check_eviction().await?;
        // Joins (its node lease, its view of the others) before its first decision.
        cluster.node_round().await?;
        Ok(Arc::new(cluster))
    }

    /// This node's id (random per boot, and new after a fence): what its slots name, the
    /// name of its stream and of its lease.
    pub fn node(&self) -> String {
        self.liveness_node()
    }

    fn liveness_node(&self) -> String {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .node
            .clone()
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The sessions this node holds.
    pub fn held(&self) -> &HeldSessions {
        &self.held
    }

    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// Runs one Redis call under [`REDIS_TIMEOUT`], timing it.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        let started = Instant::now();
        let result = tokio::time::timeout(REDIS_TIMEOUT, call).await;
        if let Some(h) = &self.metrics.redis_seconds {
            h.observe(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.redis.failed(Some(&e));
                Err(e.into())
            }
            Err(_) => {
                self.redis.failed(None);
                Err(ClusterError::Unavailable(format!(
                    "no answer from Redis within {REDIS_TIMEOUT:?}"
                )))
            }
        }
    }

    /// Starts an invocation of `script` on `user`'s keys with the common arguments (this
    /// node's id and view). Unavailable while the node is not a live member (fenced).
    fn invocation<'a>(
        &self,
        script: &'a redis::Script,
        app: u32,
        user: &str,
    ) -> Result<Invocation<'a>, ClusterError> {
        let (node, view) = self.view()?;
        let mut inv = script.prepare_invoke();
        for key in keys::user_keys(app, user) {
            inv.key(key);
        }
        inv.key(keys::user_outbox(app, user));
        let (view, reports) = {
            let on = self.callbacks_on.read().unwrap_or_else(|e| e.into_inner());
            (format!("{view}|{}", on.1), on.0.contains(&app))
        };
        inv.arg(&node).arg(TICKET_LIFETIME_SECS).arg(view);
        Ok(Invocation {
            inv,
            node,
            app,
            user: user.to_owned(),
            reports,
        })
    }

    /// A turn for a script ([`SCRIPTS_IN_FLIGHT`]), waiting at most [`SCRIPT_QUEUE_WAIT`].
    async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ClusterError> {
        Ok(
            tokio::time::timeout(SCRIPT_QUEUE_WAIT, self.in_flight.acquire())
                .await
                .map_err(|_| {
                    ClusterError::Unavailable(format!(
                        "{SCRIPTS_IN_FLIGHT} Redis scripts in flight for {SCRIPT_QUEUE_WAIT:?}"
                    ))
                })?
                .expect("the semaphore is never closed"),
        )
    }

    /// Runs an app-level script once it has a turn: [`REDIS_TIMEOUT`] counts from then.
    async fn invoke_raw(&self, inv: &ScriptInvocation<'_>) -> Result<Value, ClusterError> {
        let _turn = self.turn().await?;
        let mut con = self.redis.con();
        self.timed(inv.invoke_async(&mut con)).await
    }

    /// Replicas a promise-keeping write must reach before it is acknowledged
    /// ([`ClusterSettings::wait_replicas`]).
    fn wait_replicas(&self) -> u32 {
        self.settings
            .wait_replicas
            .unwrap_or(u32::from(self.redis.target().has_replicas()))
    }

    /// Runs a write whose acknowledgement is a promise (a REST kick revokes, a logout's
    /// ticket is dead, an account exists, a settings change stays) on the durable connection,
    /// then waits until [`Self::wait_replicas`] replicas have it (`WAIT`, at most
    /// [`WAIT_WITHIN`]): a failover promotes a replica, and one without the write would undo
    /// the promise. Not replicated in time: `Unavailable` (the caller's retry is harmless:
    /// every such write is idempotent).
    ///
    /// `key`: a key the write touched, so that on a Redis Cluster the `WAIT` goes to the shard
    /// that took it (`None`: writes on several shards; every primary is asked).
    async fn durably<'f, T>(
        &self,
        key: Option<&str>,
        call: impl FnOnce(
            primary::Con,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = redis::RedisResult<T>> + Send + 'f>,
        >,
    ) -> Result<T, ClusterError> {
        let _turn = self.turn().await?;
        let mut con = self.redis.durable();
        let value = self.timed(call(con.clone())).await?;
        self.replicated(&mut con, key).await?;
        Ok(value)
    }

    /// Waits until [`Self::wait_replicas`] replicas have every write sent so far on `con`
    /// (`WAIT`, at most [`WAIT_WITHIN`]; it blocks `con`, hence the durable connection).
    /// On a Redis Cluster the `WAIT` goes to the shard serving `key` (the one that took the
    /// write; `None`: every primary).
    async fn replicated(
        &self,
        con: &mut primary::Con,
        key: Option<&str>,
    ) -> Result<(), ClusterError> {
        let wanted = self.wait_replicas();
        if wanted == 0 {
            return Ok(());
        }
        let reached: i64 = self
            .timed(con.wait(key, wanted, WAIT_WITHIN.as_millis() as u64))
            .await?;
        if reached < i64::from(wanted) {
            return Err(ClusterError::Unavailable(format!(
                "the write reached {reached} of {wanted} Redis replicas within {WAIT_WITHIN:?}"
            )));
        }
        Ok(())
    }

    /// [`Self::durably`] for a user script (the node still the id it ran as).
    async fn invoke_durably(&self, inv: &Invocation<'_>) -> Result<Value, ClusterError> {
        let call = &inv.inv;
        let key = keys::user_keys(inv.app, &inv.user)[0].clone();
        let reply = self
            .durably(Some(&key), move |mut con| {
                Box::pin(async move { call.invoke_async(&mut con).await })
            })
            .await;
        self.settle(inv, reply).await
    }

    /// Runs a user script once it has a turn. Its answer counts only if the node is still
    /// the node id it ran as (a node that fenced meanwhile holds nothing of the old id).
    async fn invoke(&self, inv: &Invocation<'_>) -> Result<Value, ClusterError> {
        let reply = self.invoke_raw(&inv.inv).await;
        self.settle(inv, reply).await
    }

    /// Adds `inv`'s user to this node's index (`tim:node:<id>:users`, another slot) before a
    /// script that may admit it or hand back writes to other slots: if the node dies between
    /// the script and those writes, the reaper of the node finds the user and hands them
    /// back again (`reap.lua`).
    async fn index_user(&self, inv: &Invocation<'_>) -> Result<(), ClusterError> {
        let mut con = self.redis.con();
        let member = format!("{}:{}", inv.app, inv.user);
        let _: i64 = self
            .timed(con.sadd(keys::node_users(&inv.node), member))
            .await?;
        Ok(())
    }

    /// A user script's reply: makes the writes to other slots it handed back (the second
    /// step, also when the node fenced meanwhile: a notice must not wait for the reaper), then
    /// the reply counts only if the node is still the id it ran as.
    async fn settle(
        &self,
        inv: &Invocation<'_>,
        reply: Result<Value, ClusterError>,
    ) -> Result<Value, ClusterError> {
        let reply = match reply {
            Ok(v) => {
                let (value, writes) = split_deferred(&v)?;
                self.write_deferred(inv.app, &inv.user, writes).await;
                Ok(value)
            }
            Err(e) => Err(e),
        };
        self.as_still(&inv.node, reply)
    }

    /// Makes the writes to other slots a script handed back (`later` in `lua/prelude.lua`):
    /// the durable ones (kick notices to other nodes' streams), then their outbox markers
    /// go, then the others (index removals). Returns whether all were made; if not, they are
    /// kept and retried each round ([`Self::write_ends`]), and their markers stay in Redis
    /// (the next script on the user hands them back after 5 s; the reaper, if this node dies).
    async fn write_deferred(&self, app: u32, user: &str, writes: Vec<Deferred>) -> bool {
        if writes.is_empty() {
            return true;
        }
        match self.try_write_deferred(app, user, &writes).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(app, user, error = %e, writes = writes.len(),
                    "writes to other Redis slots not made yet; retried each round");
                let mut q = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
                if q.len() >= DEFERRED_KEPT {
                    q.pop_front();
                }
                q.push_back((app, user.to_owned(), writes));
                false
            }
        }
    }

    async fn try_write_deferred(
        &self,
        app: u32,
        user: &str,
        writes: &[Deferred],
    ) -> Result<(), ClusterError> {
        let con = self.redis.con();
        let run = |ws: Vec<&Deferred>| {
            futures_util::future::try_join_all(ws.into_iter().map(|w| {
                let mut con = con.clone();
                let cmd = w.cmd();
                async move { self.timed(cmd.query_async::<Value>(&mut con)).await }
            }))
        };
        let (marked, unmarked): (Vec<&Deferred>, Vec<&Deferred>) =
            writes.iter().partition(|w| !w.marker.is_empty());
        if !marked.is_empty() {
            let mut hdel = redis::cmd("HDEL");
            hdel.arg(keys::user_outbox(app, user));
            for w in &marked {
                hdel.arg(&w.marker);
            }
            // One key's writes in the order the script handed them back (a user's callback
            // events, older ones handed back again first); different keys in parallel.
            let mut by_key: Vec<Vec<&Deferred>> = Vec::new();
            for w in marked {
                match by_key.iter_mut().find(|g| g[0].command[1] == w.command[1]) {
                    Some(g) => g.push(w),
                    None => by_key.push(vec![w]),
                }
            }
            futures_util::future::try_join_all(by_key.into_iter().map(|g| {
                let con = con.clone();
                async move {
                    for w in g {
                        let mut con = con.clone();
                        let _: Value = self.timed(w.cmd().query_async(&mut con)).await?;
                    }
                    Ok::<(), ClusterError>(())
                }
            }))
            .await?;
            let mut con = con.clone();
            let _: i64 = self.timed(hdel.query_async(&mut con)).await?;
        }
        run(unmarked).await?;
        Ok(())
    }

    /// Retries the writes to other slots Redis did not take when their scripts ran.
    async fn write_deferred_again(&self) {
        loop {
            let next = self
                .deferred
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some((app, user, writes)) = next else {
                return;
            };
            if let Err(e) = self.try_write_deferred(app, &user, &writes).await {
                tracing::debug!(error = %e, "writes to other Redis slots still not made");
                self.deferred
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_front((app, user, writes));
                return;
            }
        }
    }

    /// Writes handed back by scripts and not made yet (`timd_state_entries`).
    pub fn deferred_len(&self) -> usize {
        self.deferred
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn as_still(
        &self,
        node: &str,
        reply: Result<Value, ClusterError>,
    ) -> Result<Value, ClusterError> {
        if reply.is_ok() && !self.still(node) {
            return Err(ClusterError::Unavailable(
                "this node fenced itself meanwhile".into(),
            ));
        }
        reply
    }

    /// Runs a login or resume script that would admit `admits`: if it was sent but its
    /// answer never came, Redis may hold a slot for it that this node does not, so the node
    /// releases that slot on its next node rounds ([`Self::write_ends`]) rather than let
    /// it stand, held by nobody, for a whole lease.
    async fn invoke_admitting(
        &self,
        inv: &Invocation<'_>,
        admits: impl FnOnce() -> InstanceInfo,
    ) -> Result<Value, ClusterError> {
        let mut con = self.redis.con();
        self.invoke_admitting_on(&mut con, inv, admits).await
    }

    /// [`Self::invoke_admitting`] on `con` (a login that may have to wait for the replicas
    /// runs on the durable connection: the `WAIT` blocks it).
    async fn invoke_admitting_on(
        &self,
        con: &mut primary::Con,
        inv: &Invocation<'_>,
        admits: impl FnOnce() -> InstanceInfo,
    ) -> Result<Value, ClusterError> {
        let _turn = self.turn().await?;
        let sent = Instant::now();
        let reply = self.timed(inv.inv.invoke_async(con)).await;
        if reply.is_err() {
            self.held.orphan(admits(), sent);
        }
        drop(_turn);
        self.settle(inv, reply).await
    }

    /// Applies kicks a script decided for sessions of this very node.
    fn apply_local(&self, notices: Vec<(SessionId, Notice)>) {
        for (session, notice) in notices {
            self.held.apply(session, notice);
        }
    }

    /// A login (the UserSig already verified): one atomic decision in Redis.
    pub async fn login(
        &self,
        new: NewSession,
        settings: &LoginSettings,
    ) -> Result<LoginDecision, ClusterError> {
        let session = SessionId::next();
        let mut inv = self.invocation(&self.scripts.login, new.app, &new.user)?;
        inv.arg(session.0)
            .arg(&new.instance)
            .arg(new.platform.as_str())
            .arg(new.expire_at)
            .arg(new.sig_time);
        policy_args(&mut inv, settings);
        inv.arg(client_arg(new.client));
        self.index_user(&inv).await?;
        // With replicas to wait for (behind Sentinel, on a Redis Cluster) a login runs on the
        // durable connection: if it evicted someone it is answered once a replica has it, since a failover to a replica without it would
        // give the evicted instances their slots back, and their nodes, whose notices went
        // with it, would never tell them.
        let waits = self.wait_replicas() > 0;
        let mut con = if waits {
            self.redis.durable()
        } else {
            self.redis.con()
        };
        let sent = Instant::now();
        let reply = self
            .invoke_admitting_on(&mut con, &inv, || new.info(session, 0, inv.node.clone()))
            .await?;
        let items = array(&reply)?;
        match items.first().map(text).transpose()?.as_deref() {
            Some("revoked") => Ok(LoginDecision::Revoked),
            Some("ok") if items.len() >= 5 => {
                let info = new.info(session, int(&items[1])?, inv.node.clone());
                let kicked = int(&items[3])? as usize;
                self.apply_local(local_notices(&items[4])?);
                if waits && kicked > 0 {
                    let key = &keys::user_keys(inv.app, &inv.user)[0];
                    if let Err(e) = self.replicated(&mut con, Some(key)).await {
                        // Whom it evicted here was told (this primary has it); the slot
                        // it took goes, as for a login whose answer never came.
                        self.held.orphan(info, sent);
                        return Err(e);
                    }
                }
                self.held.insert(info.clone(), new.outbox);
                let kicked_platforms = match items.get(5) {
                    Some(v) => array(v)?
                        .iter()
                        .filter_map(|p| text(p).ok().and_then(|p| Platform::parse(&p)))
                        .collect(),
                    None => Vec::new(),
                };
                Ok(LoginDecision::Admitted(Admission {
                    info,
                    new_account: int(&items[2])? == 1,
                    kicked,
                    kicked_platforms,
                    reported: inv.reports,
                }))
            }
            _ => Err(BadReply(format!("login: {reply:?}")).into()),
        }
    }

    /// A resume with a verified ticket: its own slot back, or why not. Never kicks.
    /// Also returns whether the script stored its Login event (`resume.lua`).
    pub async fn resume(
        &self,
        claims: &TicketClaims,
        outbox: Outbox,
        settings: &LoginSettings,
        client: Option<std::net::IpAddr>,
    ) -> Result<(InstanceInfo, bool), ResumeError> {
        let session = SessionId::next();
        let mut inv = self.invocation(&self.scripts.resume, claims.app, &claims.user)?;
        inv.arg(session.0)
            .arg(&claims.instance)
            .arg(claims.platform.as_str())
            .arg(claims.since_ms)
            .arg(claims.expire_at)
            .arg(claims.sig_time);
        policy_args(&mut inv, settings);
        inv.arg(claims.valid_until);
        inv.arg(client_arg(client));
        self.index_user(&inv).await.map_err(ResumeError::from)?;
        let reply = self
            .invoke_admitting(&inv, || {
                InstanceInfo::resumed(claims, session, inv.node.clone())
            })
            .await
            .map_err(ResumeError::from)?;
        let items = array(&reply).map_err(ClusterError::from)?;
        if items.first().and_then(|v| text(v).ok()).as_deref() == Some("busy") {
            return Err(ClusterError::Unavailable(
                "Redis just restarted: resumes wait one node round".into(),
            )
            .into());
        }
        let decided = || -> Result<Result<InstanceInfo, ResumeRefused>, BadReply> {
            Ok(Err(match items.first().map(text).transpose()?.as_deref() {
                Some("ok") if items.len() == 5 => {
                    let info = InstanceInfo {
                        since_ms: int(&items[1])?,
                        expire_at: int(&items[2])?,
                        sig_time: int(&items[3])?,
                        ..InstanceInfo::resumed(claims, session, inv.node.clone())
                    };
                    self.apply_local(local_notices(&items[4])?);
                    return Ok(Ok(info));
                }
                Some("kicked") if items.len() == 2 => {
                    ResumeRefused::Kicked(kick_reason(&text(&items[1])?)?)
                }
                Some("replaced") => ResumeRefused::Replaced,
                Some("ended") => ResumeRefused::Ended,
                _ => return Err(BadReply(format!("resume: {reply:?}"))),
            }))
        };
        match decided().map_err(ClusterError::from)? {
            Ok(info) => {
                self.held.insert(info.clone(), outbox);
                Ok((info, inv.reports))
            }
            Err(refused) => Err(ResumeError::Refused(refused)),
        }
    }

    /// Runs `session.lua` for one of this node's sessions.
    /// A session's change (`logout`, `release`, ...); a logout is a promise (its tickets are
    /// dead), so it is acknowledged only once replicated ([`Self::durably`]).
    async fn session_change(&self, info: &InstanceInfo, what: &str) -> Result<bool, ClusterError> {
        Ok(self.session_change_by(info, what, None).await?.0)
    }

    /// [`Self::session_change`] acted from `client`: also whether the script stored the
    /// change's State.StateChange event (a logout, an expiry: `session.lua`).
    async fn session_change_by(
        &self,
        info: &InstanceInfo,
        what: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<(bool, bool), ClusterError> {
        let mut inv = self.invocation(&self.scripts.session, info.app, &info.user)?;
        inv.arg(info.session.0).arg(&info.instance).arg(what);
        inv.arg(info.since_ms).arg(info.platform.as_str());
        inv.arg(client_arg(client))
            .arg(if client.is_some() { "1" } else { "0" });
        let reports = inv.reports && (what == "logout" || (what == "expired" && client.is_some()));
        let reply = if what == "logout" {
            self.index_user(&inv).await?;
            self.invoke_durably(&inv).await?
        } else {
            self.invoke(&inv).await?
        };
        Ok((int(&reply)? == 1, reports))
    }

    /// Logout: the session ends and its tickets die. Answers once the end is recorded in
    /// Redis, retried for up to [`LOGOUT_WRITE_WITHIN`]; if Redis still has not got it,
    /// an error — and the node keeps writing it each node round ([`Self::write_ends`])
    /// while a ticket of the session could still resume. The local session is gone either
    /// way. Returns whether the session was still this node's, and whether the script
    /// stored its Logout event (`session.lua`).
    pub async fn logout(
        &self,
        session: SessionId,
        client: Option<std::net::IpAddr>,
    ) -> Result<(bool, bool), ClusterError> {
        let Some(info) = self.held.remove(session) else {
            return Ok((false, false));
        };
        let give_up = tokio::time::Instant::now() + LOGOUT_WRITE_WITHIN;
        let mut pause = Duration::from_millis(50);
        loop {
            let left = give_up.saturating_duration_since(tokio::time::Instant::now());
            let attempt =
                tokio::time::timeout(left, self.session_change_by(&info, "logout", client))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ClusterError::Unavailable(format!(
                            "logout not recorded within {LOGOUT_WRITE_WITHIN:?}"
                        )))
                    });
            match attempt {
                Ok(ours) => return Ok(ours),
                Err(e) if left <= pause => {
                    tracing::warn!(user = %info.user, instance = %info.instance, error = %e,
                        "logout not recorded in Redis yet; written when it answers");
                    self.held.end_unwritten(info);
                    return Err(e);
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
            }
        }
    }

    /// Writes the ends Redis could not record when they happened (each node round, before
    /// the renewals). One whose UserSig ran out is dropped: its tickets are dead anyway.
    /// Then releases the slots of scripts whose answer never came.
    pub async fn write_ends(&self) {
        self.write_deferred_again().await;
        self.write_logouts().await;
        // A slot no longer lapses while its node lives: released until Redis answers (or
        // the node fences itself, and its old id's slots are dead).
        for (info, _sent) in self.held.orphans() {
            // One whose end was reported already (an expiry, a sweep) is released; the
            // others ('orphan': a login or resume whose answer never came) report TimeOut.
            let what = if info.attached { "orphan" } else { "release" };
            match self.session_change(&info, what).await {
                Ok(released) => {
                    if released {
                        tracing::info!(user = %info.user, instance = %info.instance, "released a slot whose script's answer never came");
                    }
                    self.held.orphan_released(info.session);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "slot of a lost answer not released yet");
                    return;
                }
            }
        }
    }

    async fn write_logouts(&self) {
        let now = unix_now();
        for info in self.held.unwritten_ends() {
            if info.expire_at <= now {
                self.held.end_written(info.session);
                continue;
            }
            match self.session_change(&info, "logout").await {
                Ok(_) => {
                    tracing::info!(user = %info.user, instance = %info.instance, "logout recorded in Redis (late)");
                    self.held.end_written(info.session);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "logout still not recorded in Redis");
                    return;
                }
            }
        }
    }

    /// The session's UserSig ran out while its socket was up: kicked `userSigExpired`.
    /// Returns whether the script stored its Logout event (`session.lua`).
    pub async fn expire(
        &self,
        session: SessionId,
        client: Option<std::net::IpAddr>,
    ) -> Result<bool, ClusterError> {
        if let Some(info) = self.held.remove(session) {
            // Not recorded: released on the next rounds (a slot no longer lapses by
            // itself while its node lives); the UserSig is dead anyway.
            match self.session_change_by(&info, "expired", client).await {
                Ok((_, reported)) => return Ok(reported),
                Err(e) => {
                    // Its end is reported by the socket: released without an event.
                    let info = InstanceInfo {
                        attached: false,
                        ..info
                    };
                    self.held.orphan(info, Instant::now());
                    return Err(e);
                }
            }
        }
        Ok(false)
    }

    /// The socket closed without a logout: the slot is held for a resume until `until`.
    pub fn detach(self: &Arc<Self>, session: SessionId, until: Instant) {
        if let Some(info) = self.held.detach(session, until) {
            // Not awaited: the socket is gone; query_online_status shows it away soon.
            let cluster = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = cluster.session_change(&info, "away").await {
                    tracing::debug!(error = %e, "away not recorded in Redis");
                }
            });
        }
    }

    /// The session runs on a renewed UserSig, unless the user's last REST kick revokes it
    /// (checked in the script, with the change).
    pub async fn renew(
        &self,
        session: SessionId,
        expire_at: u64,
        sig_time: u64,
    ) -> Result<Renewal, ClusterError> {
        let Some(mut info) = self.held.get(session) else {
            return Ok(Renewal::Gone);
        };
        info.expire_at = expire_at;
        info.sig_time = sig_time;
        // Recorded in Redis first: a resume elsewhere then carries the new expiry. A slot
        // that is no longer this session's was kicked meanwhile (the notice is on its way).
        let mut inv = self.invocation(&self.scripts.session, info.app, &info.user)?;
        inv.arg(info.session.0)
            .arg(&info.instance)
            .arg("renew")
            .arg(expire_at)
            .arg(sig_time);
        Ok(match int(&self.invoke(&inv).await?)? {
            1 => match self.held.renewed(session, expire_at, sig_time) {
                Some(info) => Renewal::Renewed(info),
                None => Renewal::Gone,
            },
            2 => Renewal::Revoked,
            _ => Renewal::Gone,
        })
    }

    /// REST `kick` (or `account_delete` when `delete`): records the revocation time `at`,
    /// kicks every instance wherever it is. `None` if the account does not exist.
    pub async fn kick_user(
        &self,
        app: u32,
        user: &str,
        at: u64,
        delete: bool,
    ) -> Result<Option<usize>, ClusterError> {
        let mut inv = self.invocation(&self.scripts.kick_user, app, user)?;
        inv.arg(at).arg(if delete { "delete" } else { "kick" });
        self.index_user(&inv).await?;
        let reply = self.invoke_durably(&inv).await?;
        let items = array(&reply)?;
        match items.first().map(text).transpose()?.as_deref() {
            Some("missing") => Ok(None),
            Some("ok") if items.len() == 3 => {
                self.apply_local(local_notices(&items[2])?);
                Ok(Some(int(&items[1])? as usize))
            }
            _ => Err(BadReply(format!("kick_user: {reply:?}")).into()),
        }
    }

    /// REST `account_delete`: every user's deletion (`kick_user.lua`, revoking up to `at`
    /// and kicking) in **one transaction** (MULTI/EXEC): all of them or none. For each,
    /// `None` if the account did not exist, else how many instances were online.
    pub async fn delete_accounts(
        &self,
        app: u32,
        users: &[String],
        at: u64,
    ) -> Result<Vec<Option<usize>>, ClusterError> {
        let mut replies = Vec::with_capacity(users.len());
        if self.redis.is_sharded() {
            // A Redis Cluster has no transaction across shards: each user's deletion is its
            // own atomic script, in turn (docs/cluster.md).
            for user in users {
                let mut inv = self.invocation(&self.scripts.kick_user, app, user)?;
                inv.arg(at).arg("delete");
                self.index_user(&inv).await?;
                replies.push(self.invoke_durably(&inv).await?);
            }
        } else {
            let mut pipe = redis::pipe();
            pipe.atomic().load_script(&self.scripts.kick_user).ignore();
            let mut invs = Vec::with_capacity(users.len());
            for user in users {
                let mut inv = self.invocation(&self.scripts.kick_user, app, user)?;
                inv.arg(at).arg("delete");
                self.index_user(&inv).await?;
                pipe.invoke_script(&inv.inv);
                invs.push(inv);
            }
            let pipe = &pipe;
            let wrapped: Vec<Value> = self
                .durably(None, move |mut con| {
                    Box::pin(async move { pipe.query_async(&mut con).await })
                })
                .await?;
            for (inv, reply) in invs.iter().zip(wrapped) {
                replies.push(self.settle(inv, Ok(reply)).await?);
            }
        }
        let mut out = Vec::with_capacity(users.len());
        for reply in &replies {
            let items = array(reply)?;
            out.push(match items.first().map(text).transpose()?.as_deref() {
                Some("missing") => None,
                Some("ok") if items.len() == 3 => {
                    self.apply_local(local_notices(&items[2])?);
                    Some(int(&items[1])? as usize)
                }
                _ => return Err(BadReply(format!("account_delete: {reply:?}")).into()),
            });
        }
        Ok(out)
    }

    /// `account_import`: registers the accounts; returns how many were new.
    pub async fn import(&self, app: u32, users: &[String]) -> Result<usize, ClusterError> {
        let now = unix_now();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hset_nx(&keys::user_keys(app, user)[0], "acct", now);
        }
        let pipe = &pipe;
        let key = match users {
            [one] => Some(keys::user_keys(app, one)[0].clone()),
            _ => None,
        };
        let new: Vec<i64> = self
            .durably(key.as_deref(), move |mut con| {
                Box::pin(async move { con.query_pipe(pipe).await })
            })
            .await?;
        Ok(new.iter().filter(|n| **n == 1).count())
    }

    /// Which of `users` have an account.
    pub async fn accounts_exist(
        &self,
        app: u32,
        users: &[String],
    ) -> Result<Vec<bool>, ClusterError> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hexists(&keys::user_keys(app, user)[0], "acct");
        }
        let mut con = self.redis.con();
        self.timed(con.query_pipe(&pipe)).await
    }

    /// The platforms of each user's connected instances (live lease, socket attached).
    pub async fn online(
        &self,
        app: u32,
        users: &[String],
    ) -> Result<Vec<Vec<Platform>>, ClusterError> {
        let mut pipe = redis::pipe();
        for user in users {
            let [_, order, slots, _] = keys::user_keys(app, user);
            pipe.zrange(order, 0, -1).hgetall(slots);
        }
        let mut con = self.redis.con();
        let replies: Vec<Value> = self.timed(con.query_pipe(&pipe)).await?;
        let mut out = Vec::with_capacity(users.len());
        for pair in replies.chunks(2) {
            let [order, slots] = pair else {
                return Err(BadReply("online: odd reply".into()).into());
            };
            let slots = array(slots)?;
            let mut platforms = Vec::new();
            for inst in array(order)? {
                let inst = text(inst)?;
                let slot = slots
                    .chunks(2)
                    .find(|kv| kv.first().and_then(|k| text(k).ok()).as_deref() == Some(&*inst))
                    .and_then(|kv| kv.get(1))
                    .map(text)
                    .transpose()?;
                if let Some(slot) = slot.as_deref().and_then(Slot::parse) {
                    if slot.attached && self.slot_live(&slot.node, slot.at_ms) {
                        platforms.push(slot.platform);
                    }
                }
            }
            out.push(platforms);
        }
        Ok(out)
    }

    /// `user`'s last REST kick or deletion (unix s), from Redis.
    pub async fn kicked_at(&self, app: u32, user: &str) -> Result<Option<u64>, ClusterError> {
        let mut con = self.redis.con();
        let key = keys::user_keys(app, user)[0].clone();
        let at: Option<u64> = self.timed(con.hget(key, "kick")).await?;
        Ok(at)
    }

    /// Registers again every session this node holds, after Redis lost data (once: its
    /// node entry vanished, or Redis restarted), and applies what Redis reports (sessions
    /// kicked or superseded meanwhile). Returns how many were gone, and whether every user
    /// was done (if not, the next round tries again).
    pub async fn register_again(&self, apps: &Apps) -> (usize, bool) {
        use futures_util::stream::{self, StreamExt};
        let users = self.held.by_user();
        let results: Vec<_> = stream::iter(users)
            .map(|((app, user), sessions)| async move {
                let mut inv = match self.invocation(&self.scripts.renew_leases, app, &user) {
                    Ok(inv) => inv,
                    Err(e) => return (user, Err(e)),
                };
                let settings = apps.get(app).map(|a| a.settings()).unwrap_or_default();
                policy_args(&mut inv, &settings);
                if let Err(e) = self.index_user(&inv).await {
                    return (user, Err(e));
                }
                for s in &sessions {
                    inv.arg(s.info.session.0)
                        .arg(&s.info.instance)
                        .arg(s.info.platform.as_str())
                        .arg(s.info.since_ms)
                        .arg(s.info.expire_at)
                        .arg(s.info.sig_time)
                        .arg(if s.attached { "1" } else { "0" });
                }
                (user, self.invoke(&inv).await)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut gone = 0;
        let mut done = true;
        for (user, result) in results {
            match result.and_then(|v| {
                let items = array(&v)?;
                let [again, notices] = items else {
                    return Err(BadReply(format!("renew_leases: {v:?}")).into());
                };
                let mut out = Vec::new();
                for n in array(notices)? {
                    match array(n)? {
                        [session, kind, reason] => out.push(scripts::notice(
                            &text(kind)?,
                            &text(session)?,
                            &text(reason)?,
                        )?),
                        _ => return Err(BadReply(format!("renew_leases: {v:?}")).into()),
                    }
                }
                Ok((int(again)?, out))
            }) {
                Ok((again, notices)) => {
                    if again > 0 {
                        self.metrics.registered_again.inc_by(again);
                        tracing::info!(user = %user, again, "sessions registered again in Redis");
                    }
                    for (session, notice) in notices {
                        self.metrics.renewals_gone.inc();
                        gone += 1;
                        tracing::info!(user = %user, ?notice, "renewal: session gone; telling its socket");
                        self.held.apply(session, notice);
                    }
                }
                Err(e) => {
                    done = false;
                    tracing::warn!(user = %user, error = %e, "not registered again yet");
                }
            }
        }
        (gone, done)
    }

    /// Frees the slots of away sessions whose grace is over, and kicks (`userSigExpired`)
    /// those whose UserSig ran out while away.
    pub async fn sweep(&self) {
        let (released, expired) = self.held.due(Instant::now(), unix_now());
        for (info, what) in released
            .iter()
            .map(|i| (i, "release"))
            .chain(expired.iter().map(|i| (i, "expired")))
        {
            if let Err(e) = self.session_change(info, what).await {
                tracing::debug!(error = %e, what, "sweep not recorded in Redis; released on the next rounds");
                self.held.orphan(info.clone(), Instant::now());
            }
        }
    }

    /// `user`'s instances with a live lease (attached or away), earliest login first, with
    /// the node holding each: the demo page and the console.
    pub async fn instances(&self, app: u32, user: &str) -> Result<Vec<InstanceInfo>, ClusterError> {
        let [_, order, slots, _] = keys::user_keys(app, user);
        let mut con = self.redis.con();
        let (order, slots): (Vec<String>, std::collections::HashMap<String, String>) = self
            .timed(con.query_pipe(redis::pipe().zrange(order, 0, -1).hgetall(slots)))
            .await?;
        Ok(order
            .into_iter()
            .filter_map(|instance| {
                let slot = Slot::parse(slots.get(&instance)?)?;
                self.slot_live(&slot.node, slot.at_ms)
                    .then(|| InstanceInfo {
                        session: SessionId(slot.session),
                        app,
                        user: user.to_owned(),
                        instance,
                        platform: slot.platform,
                        since_ms: slot.since_ms,
                        expire_at: slot.expire_at,
                        sig_time: slot.sig_time,
                        attached: slot.attached,
                        node: slot.node,
                    })
            })
            .collect())
    }

    /// `user`'s recent kicks (its tombstones), oldest first.
    pub async fn recent_kicks(
        &self,
        app: u32,
        user: &str,
    ) -> Result<Vec<KickRecord>, ClusterError> {
        let tombs = keys::user_keys(app, user)[3].clone();
        let mut con = self.redis.con();
        let all: std::collections::HashMap<String, String> = self.timed(con.hgetall(tombs)).await?;
        let mut kicks: Vec<KickRecord> = all
            .iter()
            .filter_map(|(instance, v)| kick_record(instance, v))
            .collect();
        kicks.sort_by_key(|k| k.at_ms);
        Ok(kicks)
    }

    /// Loads `app`'s stored login settings, storing `app`'s initial ones as version 1 if it
    /// has none yet (`who` names where they came from), and applies them here.
    pub async fn load_settings(&self, app: &App, who: &str) -> Result<Versioned, ClusterError> {
        let [settings, history, _] = keys::settings_keys(app.sdkappid);
        let initial = app.initial_settings();
        let mut inv = self.scripts.settings_init.prepare_invoke();
        inv.key(settings)
            .key(history)
            .arg(initial.web_instances)
            .arg(initial.platform_instances)
            .arg(initial.policy.as_str())
            .arg(who)
            .arg(app.sdkappid);
        let reply = self.invoke_raw(&inv).await?;
        let stored = versioned_of(array(&reply)?)?;
        app.apply(stored);
        self.ack_settings(app.sdkappid, stored.version).await?;
        Ok(stored)
    }

    /// A login-settings change by `admin`: stored in Redis (with its history) and announced;
    /// applied here at once (with `apply_now`, what it no longer allows is kicked); answers
    /// when every live node has applied it, or after [`SETTINGS_ACK_WAIT`].
    pub async fn set_settings(
        &self,
        apps: &Apps,
        app: &App,
        change: SettingsUpdate,
        admin: &str,
        apply_now: bool,
    ) -> Result<Versioned, ClusterError> {
        let [settings, history, _] = keys::settings_keys(app.sdkappid);
        let mut inv = self.scripts.settings_set.prepare_invoke();
        let field = |v: Option<u8>| v.map(|n| n.to_string()).unwrap_or_default();
        inv.key(settings)
            .key(history)
            .arg(field(change.web_instances))
            .arg(field(change.platform_instances))
            .arg(change.policy.map(|p| p.as_str()).unwrap_or(""))
            .arg(admin)
            .arg(if apply_now { "1" } else { "0" })
            .arg(app.sdkappid)
            .arg(crate::backend::SETTINGS_HISTORY_KEPT);
        let here = app.versioned();
        inv.arg(here.version)
            .arg(here.settings.web_instances)
            .arg(here.settings.platform_instances)
            .arg(here.settings.policy.as_str());
        let inv = &inv;
        let key = keys::settings_keys(app.sdkappid)[0].clone();
        let reply: Value = self
            .durably(Some(&key), move |mut con| {
                Box::pin(async move { inv.invoke_async(&mut con).await })
            })
            .await?;
        let new = versioned_of(array(&reply)?)?;
        self.refresh_settings(apps, app.sdkappid).await?;
        self.wait_for_nodes(app.sdkappid, new.version).await;
        Ok(new)
    }

    /// Reads `app_id`'s settings from Redis and applies them if newer than those in force
    /// here (kicking what an `ApplyNow` change no longer allows), then acknowledges.
    pub async fn refresh_settings(&self, apps: &Apps, app_id: u32) -> Result<(), ClusterError> {
        let Some(app) = apps.get(app_id) else {
            return Ok(());
        };
        let Some((stored, enforce)) = self.read_settings(app_id).await? else {
            return Ok(()); // never stored (Redis lost it): a node restores it on its next round
        };
        let before = app.versioned().version;
        if app.apply(stored) {
            tracing::info!(
                app = app_id,
                version = stored.version,
                settings = ?stored.settings,
                "login settings changed"
            );
            if enforce > before {
                let kicked = self.enforce(app_id, &stored.settings).await;
                tracing::info!(app = app_id, kicked, "login settings applied now");
            }
        }
        self.ack_settings(app_id, app.versioned().version).await
    }

    /// Checks every app's settings version against Redis (each node round: the channel
    /// may have lost an announcement).
    pub async fn check_settings(&self, apps: &Apps) {
        let mut pipe = redis::pipe();
        for app in apps.iter() {
            pipe.hget(&keys::settings_keys(app.sdkappid)[0], "version");
        }
        let mut con = self.redis.con();
        let versions: Vec<Option<u64>> = match self.timed(con.query_pipe(&pipe)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "settings check failed");
                return;
            }
        };
        for (app, version) in apps.iter().zip(versions) {
            let here = app.versioned();
            if version.is_some_and(|v| v > here.version) {
                if let Err(e) = self.refresh_settings(apps, app.sdkappid).await {
                    tracing::warn!(app = app.sdkappid, error = %e, "cannot load new login settings");
                }
            } else if version.unwrap_or(0) < here.version {
                // Redis lost them (or a node started meanwhile stored its first ones): the
                // highest version wins.
                if let Err(e) = self.restore_settings(app.sdkappid, here).await {
                    tracing::warn!(app = app.sdkappid, error = %e, "cannot restore the login settings in Redis");
                }
            }
        }
    }

    /// Stores `here` (this node's settings) in Redis if Redis has an older version.
    async fn restore_settings(&self, app: u32, here: Versioned) -> Result<(), ClusterError> {
        let [settings, history, _] = keys::settings_keys(app);
        let mut inv = self.scripts.settings_restore.prepare_invoke();
        inv.key(settings)
            .key(history)
            .arg(here.version)
            .arg(here.settings.web_instances)
            .arg(here.settings.platform_instances)
            .arg(here.settings.policy.as_str())
            .arg(format!("(restored by node {})", self.node()));
        if int(&self.invoke_raw(&inv).await?)? == 1 {
            tracing::warn!(
                app,
                version = here.version,
                "login settings were missing or older in Redis: restored from this node"
            );
        }
        Ok(())
    }

    /// Kicks what `settings` no longer allow among the users this node holds sessions of
    /// (every online session is held by a live node, so the nodes together cover them all).
    async fn enforce(&self, app: u32, settings: &LoginSettings) -> usize {
        let mut kicked = 0;
        for user in self.held.users_of(app) {
            let reply = async {
                let mut inv = self.invocation(&self.scripts.enforce, app, &user)?;
                policy_args(&mut inv, settings);
                self.index_user(&inv).await?;
                self.invoke(&inv).await
            }
            .await
            .and_then(|v| {
                let items = array(&v)?;
                let [count, mine] = items else {
                    return Err(BadReply(format!("enforce: {v:?}")).into());
                };
                Ok((int(count)?, local_notices(mine)?))
            });
            match reply {
                Ok((count, mine)) => {
                    kicked += count as usize;
                    self.apply_local(mine);
                }
                Err(e) => {
                    tracing::warn!(app, user = %user, error = %e, "ApplyNow not enforced for a user")
                }
            }
        }
        kicked
    }

    /// Tells the cluster this node decides with `version` of `app`'s settings.
    async fn ack_settings(&self, app: u32, version: u64) -> Result<(), ClusterError> {
        let applied = keys::settings_keys(app)[2].clone();
        let mut con = self.redis.con();
        let _: () = self.timed(con.hset(applied, self.node(), version)).await?;
        Ok(())
    }

    /// Waits until every live node has acknowledged `version` of `app`'s settings, at most
    /// [`SETTINGS_ACK_WAIT`] (a node that does not answer is on its way out: its lease
    /// lapses, and it learns the version on its next round if it comes back).
    async fn wait_for_nodes(&self, app: u32, version: u64) {
        let applied = keys::settings_keys(app)[2].clone();
        let give_up = tokio::time::Instant::now() + SETTINGS_ACK_WAIT;
        loop {
            let mut con = self.redis.con();
            let now = unix_now_ms();
            let nodes: Result<Vec<String>, _> = self
                .timed(con.zrangebyscore(keys::NODES, now, "+inf"))
                .await;
            let behind = match nodes {
                Ok(nodes) if nodes.is_empty() => 0,
                Ok(nodes) => {
                    let acks: Result<Vec<Option<u64>>, _> = self
                        .timed(
                            redis::cmd("HMGET")
                                .arg(&applied)
                                .arg(&nodes)
                                .query_async(&mut con),
                        )
                        .await;
                    match acks {
                        Ok(acks) => acks
                            .iter()
                            .filter(|a| a.is_none_or(|v| v < version))
                            .count(),
                        Err(_) => nodes.len(),
                    }
                }
                Err(_) => usize::MAX,
            };
            if behind == 0 {
                return;
            }
            if tokio::time::Instant::now() >= give_up {
                tracing::warn!(
                    app,
                    version,
                    behind,
                    "login settings: not every live node acknowledged in time"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// `app`'s settings history, newest first, at most `limit`.
    pub async fn settings_history(
        &self,
        app: u32,
        limit: usize,
    ) -> Result<Vec<SettingsChange>, ClusterError> {
        let history = keys::settings_keys(app)[1].clone();
        let mut con = self.redis.con();
        let entries: Vec<String> = self
            .timed(con.lrange(history, 0, limit.saturating_sub(1) as isize))
            .await?;
        Ok(entries.iter().filter_map(|e| history_entry(e)).collect())
    }

    /// `app`'s stored settings (what every node decides with once it has them).
    pub async fn stored_settings(&self, app: u32) -> Result<Option<Versioned>, ClusterError> {
        Ok(self.read_settings(app).await?.map(|(stored, _)| stored))
    }

    /// `app`'s settings hash: the stored settings and the last version set with `ApplyNow`
    /// (`None` if Redis holds none).
    async fn read_settings(&self, app: u32) -> Result<Option<(Versioned, u64)>, ClusterError> {
        let key = keys::settings_keys(app)[0].clone();
        let mut con = self.redis.con();
        let fields: Vec<Option<String>> = self
            .timed(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&["version", "web", "other", "policy", "enforce"][..])
                    .query_async(&mut con),
            )
            .await?;
        if fields.first().is_none_or(|f| f.is_none()) {
            return Ok(None);
        }
        let values: Vec<Value> = fields
            .iter()
            .map(|f| Value::BulkString(f.clone().unwrap_or_default().into_bytes()))
            .collect();
        let enforce = fields
            .get(4)
            .cloned()
            .flatten()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        Ok(Some((versioned_of(&values)?, enforce)))
    }

    /// Refuses a Redis that may evict keys unless `--allow-redis-eviction` says otherwise:
    /// under `volatile-*` the tombstones (they have a TTL) go first, and dead tickets resume;
    /// under `allkeys-*` kick times and accounts go too. Read from `INFO memory` (managed
    /// services often disable `CONFIG`).
    async fn check_eviction(&self) -> Result<(), ClusterError> {
        let infos = self.timed(self.redis.info_all("memory")).await?;
        // Every shard of a Redis Cluster must keep its keys.
        let policy = infos
            .iter()
            .map(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("maxmemory_policy:"))
                    .map(str::trim)
                    .unwrap_or("unknown")
            })
            .find(|p| *p != "noeviction")
            .unwrap_or("noeviction");
        if policy == "noeviction" {
            return Ok(());
        }
        if self.settings.allow_eviction {
            tracing::warn!(policy, "Redis may evict keys (--allow-redis-eviction): an evicted tombstone or kick time brings back a logged-out or revoked session");
            return Ok(());
        }
        Err(ClusterError::Unfit(format!(
            "Redis's maxmemory-policy is {policy}, not noeviction: when its memory fills it \
             would evict keys, and an evicted tombstone or kick time silently brings back \
             logged-out sessions and revoked UserSigs. Set `maxmemory-policy noeviction` (a full \
             Redis then refuses writes, which timd answers 70169), or start with \
             --allow-redis-eviction to accept that risk"
        )))
    }

    /// Measures Redis's clock (`TIME`) against this machine's and makes it the clock every
    /// decision here reads (`clock.rs`): at the start (then every round, from the round's
    /// own reply).
    pub async fn sync_clock(&self) -> Result<i64, ClusterError> {
        let mut con = self.redis.con();
        let before = crate::clock::system_ms();
        let (secs, micros): (u64, u64) = self
            .timed(async { redis::cmd("TIME").query_async(&mut con).await })
            .await?;
        let after = crate::clock::system_ms();
        Ok(self.set_clock(secs * 1000 + micros / 1000, before, after))
    }

    /// Asks the round loop to run now (after a fence or a resubscription).
    pub fn reconcile_now(&self) {
        self.reconcile.notify_one();
    }

    /// The way to the Redis primary (followed through a Sentinel failover).
    pub(crate) fn primary(&self) -> &Arc<primary::Primary> {
        &self.redis
    }

    /// A client for a subscription ([`primary::Primary::subscriber`]).
    pub(crate) fn subscriber(&self) -> Result<redis::Client, redis::RedisError> {
        self.redis.subscriber()
    }
}

/// A user script's invocation, with the node id it runs as.
struct Invocation<'a> {
    inv: ScriptInvocation<'a>,
    node: String,
    app: u32,
    user: String,
    /// Whether the script stores the State.StateChange event of what it decides itself
    /// (the app's callback is on at this node: the view's `CALLBACKS_ON`): then the node
    /// does not.
    reports: bool,
}

impl<'a> std::ops::Deref for Invocation<'a> {
    type Target = ScriptInvocation<'a>;
    fn deref(&self) -> &Self::Target {
        &self.inv
    }
}

impl std::ops::DerefMut for Invocation<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inv
    }
}

/// The client's address as a script's argument (the callback's `ClientIP`; empty: none).
fn client_arg(client: Option<std::net::IpAddr>) -> String {
    client.map(|c| c.to_string()).unwrap_or_default()
}

fn policy_args(inv: &mut ScriptInvocation<'_>, settings: &LoginSettings) {
    inv.arg(settings.web_instances)
        .arg(settings.platform_instances)
        .arg(settings.policy.as_str());
}

/// A slot as `lua/prelude.lua` encodes it:
/// `since|platform|node|session|at_ms|expire_at|sig_time|attached`.
struct Slot {
    since_ms: u64,
    platform: Platform,
    node: String,
    session: u64,
    /// When `node` took the slot (Redis ms): a slot is live while its node is.
    at_ms: u64,
    expire_at: u64,
    sig_time: u64,
    attached: bool,
}

impl Slot {
    fn parse(v: &str) -> Option<Slot> {
        let f: Vec<&str> = v.split('|').collect();
        if f.len() != 8 {
            return None;
        }
        Some(Slot {
            since_ms: f[0].parse().ok()?,
            platform: Platform::parse(f[1])?,
            node: f[2].to_owned(),
            session: f[3].parse().ok()?,
            at_ms: f[4].parse().ok()?,
            expire_at: f[5].parse().ok()?,
            sig_time: f[6].parse().ok()?,
            attached: f[7] == "1",
        })
    }
}

/// A tombstone as `lua/prelude.lua` encodes it: `since|end|until_s|platform|at_ms` (the
/// last two missing in tombstones written before the kick feed).
fn kick_record(instance: &str, v: &str) -> Option<KickRecord> {
    let f: Vec<&str> = v.split('|').collect();
    let reason = kick_reason(f.get(1)?).ok()?;
    Some(KickRecord {
        instance: instance.to_owned(),
        since_ms: f.first()?.parse().ok()?,
        reason,
        platform: Platform::parse(f.get(3)?)?,
        at_ms: f.get(4)?.parse().ok()?,
    })
}

/// One entry of an app's settings history: `version|time|admin|web|other|policy`.
fn history_entry(v: &str) -> Option<SettingsChange> {
    let f: Vec<&str> = v.split('|').collect();
    let [version, time, admin, web, other, policy] = f.as_slice() else {
        return None;
    };
    Some(SettingsChange {
        version: version.parse().ok()?,
        time: time.parse().ok()?,
        admin: (*admin).to_owned(),
        settings: settings_of(web, other, policy)?,
    })
}

fn settings_of(web: &str, other: &str, policy: &str) -> Option<LoginSettings> {
    let settings = LoginSettings {
        web_instances: web.parse().ok()?,
        platform_instances: other.parse().ok()?,
        policy: policy.parse::<LoginPolicy>().ok()?,
    };
    settings.validate().ok()?;
    Some(settings)
}

/// `[version, web, other, policy, ...]` as the settings scripts return them.
fn versioned_of(items: &[Value]) -> Result<Versioned, ClusterError> {
    let field = |i: usize| items.get(i).map(text).transpose().ok().flatten();
    let bad = || BadReply(format!("login settings: {items:?}"));
    let version = field(0).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let settings = match (field(1), field(2), field(3)) {
        (Some(w), Some(o), Some(p)) => settings_of(&w, &o, &p),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Versioned { version, settings })
}

/// 16 hex digits from the OS's randomness (the time and pid if it has none).
fn node_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    let n = match random {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one((std::process::id(), unix_now_ms()))
        }
    };
    format!("{n:016x}")
}
