//! Cluster mode (`timd serve --redis URL`): several nodes share sessions, accounts and kick
//! times through Redis, with every invariant of the embedded registry kept across nodes.
//!
//! - Every decision (login, resume, logout, expiry, REST kick or delete) is **one Lua
//!   script** on the user's keys (`lua/`, one hash tag): it admits, evicts the earliest
//!   beyond each limit by the user's fencing counter, leaves tombstones and publishes each
//!   kick to the victim node's own channel. Nodes never read-modify-write.
//! - Pub/sub is at-most-once, so nothing depends on it alone: a node holds a **lease** on
//!   each of its sessions and renews it every third of the lease (`tasks.rs`); a renewal
//!   reports the sessions that are gone (kicked meanwhile) and the node kicks those
//!   sockets. After every (re)subscription the node renews at once (reconciles).
//! - A node that dies stops renewing: its slots are free once their leases run out, and
//!   its clients resume on another node with their tickets.
//! - Redis unreachable: logins answer 70169 (retry), resumes close 1013 (the SDK
//!   reconnects with backoff), connected sessions stay up; renewals register again what
//!   Redis lost.
//!
//! `held.rs` is the node-local part: which socket each held session's kick goes to.

pub mod held;
pub mod keys;
pub mod scripts;
pub mod tasks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, ScriptInvocation, Value};
use tim_proto::Platform;

use crate::config::ClusterSettings;
use crate::policy::LoginSettings;
use crate::registry::{InstanceInfo, NewSession, Outbox, ResumeRefused, SessionId};
use crate::ticket::{TicketClaims, TICKET_LIFETIME_SECS};
use held::{HeldSessions, Notice};
use scripts::{array, int, kick_reason, local_notices, text, BadReply, Scripts};

/// Longest a node waits for Redis before it answers "unavailable".
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Scripts one node has in flight at once. A reconnect storm (every session of a restarted
/// node resuming together) would otherwise send thousands at once: each then waits behind
/// the others, and with the node's CPU busy too, most ran past [`REDIS_TIMEOUT`] and were
/// refused with 1013, to come back seconds later (a 50,000-session storm took 42–120 s).
/// Queued here, each call's own round trip stays short.
pub const SCRIPTS_IN_FLIGHT: usize = 64;

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
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        ClusterError::Unavailable(e.to_string())
    }
}

/// What a login decided.
#[derive(Debug)]
pub enum LoginDecision {
    Admitted {
        info: InstanceInfo,
        /// Instances kicked to make room, on any node.
        kicked: usize,
        new_account: bool,
    },
    /// The UserSig was issued at or before the user's last REST kick (70001).
    Revoked,
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
}

/// This node's membership in the cluster.
pub struct Cluster {
    node: String,
    sdkappid: u32,
    settings: ClusterSettings,
    client: redis::Client,
    redis: ConnectionManager,
    scripts: Scripts,
    held: HeldSessions,
    next_session: AtomicU64,
    metrics: ClusterMetrics,
    /// Wakes the renewal loop at once (after a resubscription).
    reconcile: tokio::sync::Notify,
    /// Turns for scripts ([`SCRIPTS_IN_FLIGHT`]); fair, so the earliest caller goes first.
    in_flight: tokio::sync::Semaphore,
}

impl Cluster {
    /// Connects to Redis (failing if it does not answer within [`REDIS_TIMEOUT`]) and picks
    /// this boot's node id.
    pub async fn connect(
        sdkappid: u32,
        settings: ClusterSettings,
        metrics: ClusterMetrics,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| ClusterError::Unavailable(format!("bad Redis URL: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let redis = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| ClusterError::Unavailable("no answer from Redis".into()))??;
        let cluster = Cluster {
            node: node_id(),
            sdkappid,
            settings,
            client,
            redis,
            scripts: Scripts::new(),
            held: HeldSessions::default(),
            next_session: AtomicU64::new(1),
            metrics,
            reconcile: tokio::sync::Notify::new(),
            in_flight: tokio::sync::Semaphore::new(SCRIPTS_IN_FLIGHT),
        };
        // One round trip now: a wrong password or database fails the start, not a login.
        let mut con = cluster.redis.clone();
        let _: String = cluster
            .timed(async { redis::cmd("PING").query_async(&mut con).await })
            .await?;
        Ok(Arc::new(cluster))
    }

    /// This boot's node id (unique per boot): the name of its channel and of its leases.
    pub fn node(&self) -> &str {
        &self.node
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

    fn new_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
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
            Ok(r) => Ok(r?),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "no answer from Redis within {REDIS_TIMEOUT:?}"
            ))),
        }
    }

    /// Starts an invocation of `script` on `user`'s keys with the common arguments.
    fn invocation<'a>(&self, script: &'a redis::Script, user: &str) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in keys::user_keys(self.sdkappid, user) {
            inv.key(key);
        }
        inv.arg(&self.node)
            .arg(TICKET_LIFETIME_SECS)
            .arg(self.settings.lease_ms);
        inv
    }

    /// Runs a script once it has a turn: [`REDIS_TIMEOUT`] counts from then.
    async fn invoke(&self, inv: &ScriptInvocation<'_>) -> Result<Value, ClusterError> {
        let _turn = tokio::time::timeout(SCRIPT_QUEUE_WAIT, self.in_flight.acquire())
            .await
            .map_err(|_| {
                ClusterError::Unavailable(format!(
                    "{SCRIPTS_IN_FLIGHT} Redis scripts in flight for {SCRIPT_QUEUE_WAIT:?}"
                ))
            })?
            .expect("the semaphore is never closed");
        let mut con = self.redis.clone();
        self.timed(inv.invoke_async(&mut con)).await
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
        let session = self.new_session_id();
        let mut inv = self.invocation(&self.scripts.login, &new.user);
        inv.arg(session.0)
            .arg(&new.instance)
            .arg(new.platform.as_str())
            .arg(new.expire_at)
            .arg(new.sig_time);
        policy_args(&mut inv, settings);
        let reply = self.invoke(&inv).await?;
        let items = array(&reply)?;
        match items.first().map(text).transpose()?.as_deref() {
            Some("revoked") => Ok(LoginDecision::Revoked),
            Some("ok") if items.len() == 5 => {
                let info = InstanceInfo {
                    session,
                    user: new.user,
                    instance: new.instance,
                    platform: new.platform,
                    since_ms: int(&items[1])?,
                    expire_at: new.expire_at,
                    sig_time: new.sig_time,
                    attached: true,
                };
                self.apply_local(local_notices(&items[4])?);
                self.held.insert(info.clone(), new.outbox);
                Ok(LoginDecision::Admitted {
                    info,
                    new_account: int(&items[2])? == 1,
                    kicked: int(&items[3])? as usize,
                })
            }
            _ => Err(BadReply(format!("login: {reply:?}")).into()),
        }
    }

    /// A resume with a verified ticket: its own slot back, or why not. Never kicks.
    pub async fn resume(
        &self,
        claims: &TicketClaims,
        outbox: Outbox,
        settings: &LoginSettings,
    ) -> Result<Result<InstanceInfo, ResumeRefused>, ClusterError> {
        let session = self.new_session_id();
        let mut inv = self.invocation(&self.scripts.resume, &claims.user);
        inv.arg(session.0)
            .arg(&claims.instance)
            .arg(claims.platform.as_str())
            .arg(claims.since_ms)
            .arg(claims.expire_at)
            .arg(claims.sig_time);
        policy_args(&mut inv, settings);
        inv.arg(claims.valid_until);
        let reply = self.invoke(&inv).await?;
        let items = array(&reply)?;
        let refused = match items.first().map(text).transpose()?.as_deref() {
            Some("ok") if items.len() == 5 => {
                let info = InstanceInfo {
                    session,
                    user: claims.user.clone(),
                    instance: claims.instance.clone(),
                    platform: claims.platform,
                    since_ms: int(&items[1])?,
                    expire_at: int(&items[2])?,
                    sig_time: int(&items[3])?,
                    attached: true,
                };
                self.apply_local(local_notices(&items[4])?);
                self.held.insert(info.clone(), outbox);
                return Ok(Ok(info));
            }
            Some("kicked") if items.len() == 2 => {
                ResumeRefused::Kicked(kick_reason(&text(&items[1])?)?)
            }
            Some("replaced") => ResumeRefused::Replaced,
            Some("ended") => ResumeRefused::Ended,
            _ => return Err(BadReply(format!("resume: {reply:?}")).into()),
        };
        Ok(Err(refused))
    }

    /// Runs `session.lua` for one of this node's sessions.
    async fn session_change(
        &self,
        info: &InstanceInfo,
        what: &str,
        renewed: Option<(u64, u64)>,
    ) -> Result<bool, ClusterError> {
        let mut inv = self.invocation(&self.scripts.session, &info.user);
        inv.arg(info.session.0).arg(&info.instance).arg(what);
        if let Some((expire_at, sig_time)) = renewed {
            inv.arg(expire_at).arg(sig_time);
        }
        Ok(int(&self.invoke(&inv).await?)? == 1)
    }

    /// Logout: the session ends and its tickets die. The local session is gone even if
    /// Redis is unreachable (then its slot frees when the lease runs out).
    pub async fn logout(&self, session: SessionId) -> Result<bool, ClusterError> {
        let Some(info) = self.held.remove(session) else {
            return Ok(false);
        };
        self.session_change(&info, "logout", None).await
    }

    /// The session's UserSig ran out while its socket was up: kicked `userSigExpired`.
    pub async fn expire(&self, session: SessionId) {
        if let Some(info) = self.held.remove(session) {
            if let Err(e) = self.session_change(&info, "expired", None).await {
                tracing::warn!(error = %e, "expiry not recorded in Redis; the lease will free the slot");
            }
        }
    }

    /// The socket closed without a logout: the slot is held for a resume until `until`.
    pub fn detach(self: &Arc<Self>, session: SessionId, until: Instant) {
        if let Some(info) = self.held.detach(session, until) {
            // Not awaited: the socket is gone; query_online_status shows it away soon.
            let cluster = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = cluster.session_change(&info, "away", None).await {
                    tracing::debug!(error = %e, "away not recorded in Redis");
                }
            });
        }
    }

    /// The session runs on a renewed UserSig.
    pub async fn renew(
        &self,
        session: SessionId,
        expire_at: u64,
        sig_time: u64,
    ) -> Option<InstanceInfo> {
        let info = self.held.renewed(session, expire_at, sig_time)?;
        if let Err(e) = self
            .session_change(&info, "renew", Some((expire_at, sig_time)))
            .await
        {
            // The ticket carries the new expiry; Redis's copy only matters to a resume
            // elsewhere, which the next renewal or resume corrects.
            tracing::warn!(error = %e, "renewed UserSig not recorded in Redis");
        }
        Some(info)
    }

    /// REST `kick` (or `account_delete` when `delete`): records the revocation time `at`,
    /// kicks every instance wherever it is. `None` if the account does not exist.
    pub async fn kick_user(
        &self,
        user: &str,
        at: u64,
        delete: bool,
    ) -> Result<Option<usize>, ClusterError> {
        let mut inv = self.invocation(&self.scripts.kick_user, user);
        inv.arg(at).arg(if delete { "delete" } else { "kick" });
        let reply = self.invoke(&inv).await?;
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

    /// `account_import`: registers the accounts; returns how many were new.
    pub async fn import(&self, users: &[String]) -> Result<usize, ClusterError> {
        let now = unix_now();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hset_nx(&keys::user_keys(self.sdkappid, user)[0], "acct", now);
        }
        let mut con = self.redis.clone();
        let new: Vec<i64> = self.timed(pipe.query_async(&mut con)).await?;
        Ok(new.iter().filter(|n| **n == 1).count())
    }

    /// Which of `users` have an account.
    pub async fn accounts_exist(&self, users: &[String]) -> Result<Vec<bool>, ClusterError> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hexists(&keys::user_keys(self.sdkappid, user)[0], "acct");
        }
        let mut con = self.redis.clone();
        self.timed(pipe.query_async(&mut con)).await
    }

    /// The platforms of each user's connected instances (live lease, socket attached).
    pub async fn online(&self, users: &[String]) -> Result<Vec<Vec<Platform>>, ClusterError> {
        let mut pipe = redis::pipe();
        for user in users {
            let [_, order, slots, _] = keys::user_keys(self.sdkappid, user);
            pipe.zrange(order, 0, -1).hgetall(slots);
        }
        let mut con = self.redis.clone();
        let replies: Vec<Value> = self.timed(pipe.query_async(&mut con)).await?;
        let now_ms = unix_now_ms();
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
                    if slot.attached && slot.lease_ms > now_ms {
                        platforms.push(slot.platform);
                    }
                }
            }
            out.push(platforms);
        }
        Ok(out)
    }

    /// `user`'s last REST kick or deletion (unix s), from Redis.
    pub async fn kicked_at(&self, user: &str) -> Result<Option<u64>, ClusterError> {
        let mut con = self.redis.clone();
        let key = keys::user_keys(self.sdkappid, user)[0].clone();
        let at: Option<u64> = self.timed(con.hget(key, "kick")).await?;
        Ok(at)
    }

    /// Renews the leases of every session this node holds and applies what the renewals
    /// report (sessions kicked or superseded meanwhile). Returns how many were gone.
    pub async fn renew_leases(&self, settings: &LoginSettings) -> usize {
        use futures_util::stream::{self, StreamExt};
        let users = self.held.by_user();
        let results: Vec<_> = stream::iter(users)
            .map(|(user, sessions)| async move {
                let mut inv = self.invocation(&self.scripts.renew_leases, &user);
                policy_args(&mut inv, settings);
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
                    self.metrics.renewals_ok.inc();
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
                    self.metrics.renewals_failed.inc();
                    tracing::debug!(user = %user, error = %e, "lease renewal failed");
                }
            }
        }
        gone
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
            if let Err(e) = self.session_change(info, what, None).await {
                tracing::debug!(error = %e, what, "sweep not recorded in Redis; the lease will free the slot");
            }
        }
    }

    /// Asks the renewal loop to run now (after a resubscription).
    pub fn reconcile_now(&self) {
        self.reconcile.notify_one();
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }
}

fn policy_args(inv: &mut ScriptInvocation<'_>, settings: &LoginSettings) {
    inv.arg(settings.web_instances)
        .arg(settings.platform_instances)
        .arg(settings.policy.as_str());
}

/// A slot as `lua/prelude.lua` encodes it (read by `online`).
struct Slot {
    platform: Platform,
    lease_ms: u64,
    attached: bool,
}

impl Slot {
    fn parse(v: &str) -> Option<Slot> {
        let f: Vec<&str> = v.split('|').collect();
        if f.len() != 8 {
            return None;
        }
        Some(Slot {
            platform: Platform::parse(f[1])?,
            lease_ms: f[4].parse().ok()?,
            attached: f[7] == "1",
        })
    }
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

fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
