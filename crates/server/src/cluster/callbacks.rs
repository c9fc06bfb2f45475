//! Cluster mode's callback outbox (`callbacks/outbox.rs`): a Redis stream per app,
//! `tim:cb:{APP}` (entries `e` = the event's JSON), and the lease that makes one live node
//! its deliverer, `tim:cb:{APP}:owner`. The writes are here (what no script decides) and in
//! `prelude.lua` (`report`: the events the decision scripts store with their decision —
//! login, resume, logout, expiry, a dead node's sessions — handed back by the script and
//! written by its node: the stream is on its app's slot, not the user's, docs/cluster.md
//! "writes to other slots"), nowhere else.

use std::sync::LazyLock;

use redis::Script;

use super::{keys, Cluster, ClusterError};

/// How long a node holds an app's delivery once it stopped renewing (it renews every
/// second): how long a dead deliverer's events wait before another node takes over.
pub const CALLBACK_LEASE_MS: u64 = 5_000;

/// Appends one event and trims the stream to the cap; returns how many were trimmed.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
         return redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])",
    )
});

/// Takes or renews the app's delivery lease: 2 taken now, 1 renewed, 0 another node's.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local cur = redis.call('GET', KEYS[1])
         if cur == ARGV[1] then
           redis.call('PEXPIRE', KEYS[1], ARGV[2])
           return 1
         elseif not cur then
           redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
           return 2
         end
         return 0",
    )
});

impl Cluster {
    /// From now on this node's scripts store `app`'s events (those of their decisions, and
    /// the sessions of dead nodes they meet).
    pub(crate) fn callbacks_on(&self, app: u32) {
        let mut on = self.callbacks_on.write().unwrap_or_else(|e| e.into_inner());
        if on.0.insert(app) {
            on.1 =
                on.0.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
        }
    }

    /// Appends `json` to `app`'s stream, trimmed to `cap`: how many old entries went.
    pub async fn callback_push(&self, app: u32, json: &str, cap: u32) -> Result<u64, ClusterError> {
        let mut con = self.redis.con();
        let mut inv = PUSH.prepare_invoke();
        inv.key(keys::callback_stream(app)).arg(json).arg(cap);
        self.timed(inv.invoke_async(&mut con)).await
    }

    /// Trims `app`'s stream to its newest `cap` entries (what the scripts appended is
    /// trimmed only loosely): how many went.
    pub async fn callback_trim(&self, app: u32, cap: u32) -> Result<u64, ClusterError> {
        let mut con = self.redis.con();
        self.timed(
            redis::cmd("XTRIM")
                .arg(keys::callback_stream(app))
                .arg("MAXLEN")
                .arg(cap)
                .query_async(&mut con),
        )
        .await
    }

    /// Up to `max` entries of `app`'s stream after id `after` (from the start: `None`).
    pub async fn callback_read(
        &self,
        app: u32,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, String)>, ClusterError> {
        let mut con = self.redis.con();
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let entries: Vec<(String, Vec<String>)> = self
            .timed(
                redis::cmd("XRANGE")
                    .arg(keys::callback_stream(app))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(max)
                    .query_async(&mut con),
            )
            .await?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| {
                let json = fields
                    .chunks(2)
                    .find(|kv| kv[0] == "e")
                    .and_then(|kv| kv.get(1).cloned())
                    .unwrap_or_default();
                (id, json)
            })
            .collect())
    }

    /// Removes delivered entries.
    pub async fn callback_remove(&self, app: u32, ids: &[String]) -> Result<(), ClusterError> {
        let mut con = self.redis.con();
        let _: u64 = self
            .timed(
                redis::cmd("XDEL")
                    .arg(keys::callback_stream(app))
                    .arg(ids)
                    .query_async(&mut con),
            )
            .await?;
        Ok(())
    }

    /// Entries waiting, and when the oldest was appended (unix ms, Redis's clock).
    pub async fn callback_stats(&self, app: u32) -> Result<(u64, Option<u64>), ClusterError> {
        let mut con = self.redis.con();
        let key = keys::callback_stream(app);
        let (len, first): (u64, Vec<(String, Vec<String>)>) = self
            .timed(
                redis::pipe()
                    .cmd("XLEN")
                    .arg(&key)
                    .cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut con),
            )
            .await?;
        let oldest = first
            .first()
            .and_then(|(id, _)| id.split('-').next()?.parse().ok());
        Ok((len, oldest))
    }

    /// Takes or renews `app`'s delivery lease for this node: `Some(true)` taken now,
    /// `Some(false)` renewed, `None` held by another node.
    pub async fn callback_lease(&self, app: u32) -> Result<Option<bool>, ClusterError> {
        let mut con = self.redis.con();
        let mut inv = LEASE.prepare_invoke();
        inv.key(keys::callback_owner(app))
            .arg(self.node())
            .arg(CALLBACK_LEASE_MS);
        let r: i64 = self.timed(inv.invoke_async(&mut con)).await?;
        Ok(match r {
            2 => Some(true),
            1 => Some(false),
            _ => None,
        })
    }
}
