//! Liveness per node, not per session: a node renews one lease for all its sessions
//! (`tim:nodes`, `lua/node_round.lua`) every lease/6, and passes the live nodes it read there
//! to every decision script (its *view*); a slot is live while its node is. A node that
//! could not renew within its node lease fences itself: it closes its sessions (their
//! clients resume) and goes on under a new node id, since others may already treat its
//! slots as free. Kicks for a node's sessions decided elsewhere are entries of its stream
//! (`tim:node:<id>:k`), read here with a cursor: a dropped connection loses nothing.
//! A dead node's users are cleaned up by a live node (`lua/reap.lua`), a lease after its
//! lease lapsed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;

use super::scripts::{self, array, int, text, BadReply};
use super::{keys, node_id, Cluster, ClusterError, REDIS_TIMEOUT};
use crate::apps::Apps;

/// How long one `XREAD` blocks on the node's stream before it asks again.
const STREAM_BLOCK: Duration = Duration::from_secs(5);

/// Entries read from the stream at once.
const STREAM_BATCH: usize = 1000;

/// Users of a dead node cleaned up at once (scripts in flight).
const REAP_IN_FLIGHT: usize = 32;

/// This node's standing in the cluster.
pub(super) struct Liveness {
    /// The current node id (a new one after a fence).
    pub node: String,
    /// `lease_ms|view_at_ms|live,ids`: the view every user script gets (`prelude.lua`).
    pub view: String,
    /// When the view was read (Redis ms) and the nodes it holds live.
    pub view_at: u64,
    pub live: HashSet<String>,
    /// Until when this node's hold is certainly good: the send time of the last renewal
    /// Redis accepted, plus nine tenths of the node lease. `None` before joining (after a
    /// fence).
    pub valid_until: Option<Instant>,
    /// Redis's run id at the last round (a new one: Redis restarted).
    pub run_id: Option<String>,
    /// Whether this node id has been in `tim:nodes` (a later 'new' means Redis lost it).
    pub joined: bool,
    /// The stream cursor (last entry read) and the last id trimmed up to.
    pub cursor: String,
    pub trimmed: String,
}

impl Liveness {
    pub fn new(lease_ms: u32) -> Liveness {
        Liveness {
            node: node_id(),
            view: format!("{lease_ms}|{}|", u64::MAX),
            view_at: u64::MAX,
            live: HashSet::new(),
            valid_until: None,
            run_id: None,
            joined: false,
            cursor: "0-0".into(),
            trimmed: "0-0".into(),
        }
    }
}

/// What a node round found.
pub enum Round {
    /// Renewed; `register_again`: Redis lost data (this node's entry vanished, or Redis
    /// restarted), so the node registers again what it holds (once).
    Renewed { register_again: bool },
    /// The node's lease had lapsed: it fenced itself.
    Fenced,
}

impl Cluster {
    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's id and view for a script, or unavailable if its hold lapsed (then it
    /// fences itself now, if it has not yet).
    pub(super) fn view(&self) -> Result<(String, String), ClusterError> {
        let lapsed = {
            let l = self.liveness();
            match l.valid_until {
                Some(until) if Instant::now() < until => {
                    return Ok((l.node.clone(), l.view.clone()));
                }
                Some(_) => true,
                None => false,
            }
        };
        if lapsed {
            self.fence("node lease lapsed");
        }
        Err(ClusterError::Unavailable(
            "this node is not (or no longer) a live member of the cluster".into(),
        ))
    }

    /// Whether this node still is the node id `node` (not fenced since).
    pub(super) fn still(&self, node: &str) -> bool {
        self.liveness().node == node
    }

    /// Whether a slot held by `node`, taken at `at_ms`, is live in this node's view (as
    /// `prelude.lua` decides).
    pub(super) fn slot_live(&self, node: &str, at_ms: u64) -> bool {
        let l = self.liveness();
        node == l.node || l.live.contains(node) || at_ms >= l.view_at
    }

    /// Checks the node lease (every few hundred ms, and before every script): a node that
    /// could not renew in time fences itself.
    pub fn check_lease(&self) {
        let lapsed = self
            .liveness()
            .valid_until
            .is_some_and(|until| Instant::now() >= until);
        if lapsed {
            self.fence("node lease lapsed");
        }
    }

    /// This node lost its hold (its lease lapsed: paused, partitioned, or Redis out of reach
    /// for the node lease): others may treat its slots as free. Every held session is
    /// closed so that its client resumes, and the node goes on under a new id (its old
    /// slots stay dead; its old stream is reaped with it).
    pub fn fence(&self, why: &str) {
        let (old, new) = {
            let mut l = self.liveness();
            let old = std::mem::replace(&mut l.node, node_id());
            l.valid_until = None;
            l.joined = false;
            l.run_id = None;
            l.cursor = "0-0".into();
            l.trimmed = "0-0".into();
            (old, l.node.clone())
        };
        let lost = self.held.fence();
        self.metrics.fenced.inc();
        tracing::warn!(
            old_node = %old,
            node = %new,
            sessions = lost,
            why,
            "fenced: this node could not renew its lease in time; its sessions are closed \
             (their clients resume) and it joins again under a new id"
        );
        self.stream_moved.notify_one();
        self.reconcile_now();
    }

    /// The node round: renews this node's lease (or learns that it lapsed: fence), reads
    /// the live nodes (the view the next scripts get), Redis's clock and run id.
    pub async fn node_round(&self) -> Result<Round, ClusterError> {
        self.check_lease();
        let node = self.liveness().node.clone();
        let mut inv = self.scripts.node_round.prepare_invoke();
        inv.key(keys::NODES)
            .arg(&node)
            .arg(self.settings.node_lease().as_millis() as u64)
            .arg(self.settings.lease_ms);
        let sent = Instant::now();
        let before = crate::clock::system_ms();
        let mut con = self.redis.con();
        let reply = self.timed(inv.invoke_async(&mut con)).await;
        let after = crate::clock::system_ms();
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.metrics.renewals_failed.inc();
                return Err(e);
            }
        };
        let items = array(&reply)?;
        let [state, now, run_id, live, dead] = items else {
            return Err(BadReply(format!("node_round: {reply:?}")).into());
        };
        let (state, now, run_id) = (text(state)?, int(now)?, text(run_id)?);
        let live: HashSet<String> = array(live)?.iter().map(text).collect::<Result<_, _>>()?;
        let dead: Vec<String> = array(dead)?.iter().map(text).collect::<Result<_, _>>()?;
        if state == "lapsed" {
            self.metrics.renewals_failed.inc();
            self.fence("node lease found lapsed in Redis");
            return Ok(Round::Fenced);
        }
        self.set_clock(now, before, after);
        // On a Redis Cluster every shard may lose writes (a failover, a restart): the round
        // watches each primary's run id, not only that of `tim:nodes`'s shard (unknown this
        // round if a shard does not answer: compared at the next).
        let run_id = if self.redis.is_sharded() {
            match self.timed(self.redis.info_all("server")).await {
                Ok(infos) => {
                    let mut ids: Vec<&str> = infos
                        .iter()
                        .filter_map(|i| i.lines().find_map(|l| l.strip_prefix("run_id:")))
                        .map(str::trim)
                        .collect();
                    ids.sort_unstable();
                    Some(ids.join(","))
                }
                Err(_) => None,
            }
        } else {
            Some(run_id)
        };
        let register_again = {
            let mut l = self.liveness();
            if l.node != node {
                // Fenced while the round was in flight: the next round joins the new id.
                return Ok(Round::Fenced);
            }
            let lost = state == "new" && l.joined;
            let restarted = match &run_id {
                Some(run_id) => l.run_id.as_deref().is_some_and(|r| r != run_id),
                None => false,
            };
            l.joined = true;
            if run_id.is_some() {
                l.run_id = run_id;
            }
            // A tenth early: the lease watch ticks every 100 ms, and the others' clock
            // (Redis's) may run a little faster than this machine's.
            let lease = self.settings.node_lease();
            l.valid_until = Some(sent + lease - lease / 10);
            let mut ids: Vec<&str> = live.iter().map(String::as_str).collect();
            ids.sort_unstable();
            l.view = format!("{}|{now}|{}", self.settings.lease_ms, ids.join(","));
            l.view_at = now;
            l.live = live;
            if lost {
                // Its stream went with the rest: read the new one from its start.
                l.cursor = "0-0".into();
                l.trimmed = "0-0".into();
            }
            lost || restarted
        };
        self.metrics.renewals_ok.inc();
        *self.dead.lock().unwrap_or_else(|e| e.into_inner()) = dead;
        Ok(Round::Renewed { register_again })
    }

    /// Redis's clock (`redis_ms`, read between `before` and `after` on this machine's clock):
    /// the offset every decision here applies. Returns it.
    pub(super) fn set_clock(&self, redis_ms: u64, before: u64, after: u64) -> i64 {
        let offset = redis_ms as i64 - ((before + after) / 2) as i64;
        let previous = crate::clock::offset_ms();
        crate::clock::set_offset_ms(offset);
        if (offset - previous).abs() > 1000 {
            tracing::warn!(
                offset_ms = offset,
                "this machine's clock is off Redis's; decisions follow Redis's clock"
            );
        }
        offset
    }

    /// Leaves the cluster (a graceful shutdown): this node's lease ends now, so its slots
    /// are free at once for every view read from now on; it is reaped a lease later.
    pub async fn leave(&self) {
        let node = self.liveness().node.clone();
        let now = crate::clock::unix_ms();
        let mut con = self.redis.con();
        let left: Result<(), _> = self
            .timed(
                redis::cmd("ZADD")
                    .arg(keys::NODES)
                    .arg("XX")
                    .arg(now.saturating_sub(1))
                    .arg(&node)
                    .query_async(&mut con),
            )
            .await;
        if let Err(e) = left {
            tracing::debug!(error = %e, "cannot leave the set of live nodes");
        }
    }

    /// Trims this node's stream up to what it has read (once per round, if it read any).
    pub async fn trim_stream(&self) {
        let (node, cursor) = {
            let l = self.liveness();
            if l.cursor == l.trimmed {
                return;
            }
            (l.node.clone(), l.cursor.clone())
        };
        // MINID keeps the entries from that id on: the one after the cursor.
        let Some(after) = cursor
            .split_once('-')
            .and_then(|(ms, seq)| Some(format!("{ms}-{}", seq.parse::<u64>().ok()? + 1)))
        else {
            return;
        };
        let mut con = self.redis.con();
        let trimmed: Result<u64, _> = self
            .timed(
                redis::cmd("XTRIM")
                    .arg(keys::node_stream(&node))
                    .arg("MINID")
                    .arg(&after)
                    .query_async(&mut con),
            )
            .await;
        match trimmed {
            Ok(_) => {
                let mut l = self.liveness();
                if l.node == node {
                    l.trimmed = cursor;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot trim the node stream"),
        }
    }

    /// Cleans up nodes dead for over a lease (one at a time, claimed so one node does it):
    /// each user of its index (`reap.lua` drops its dead slots), then its index, stream,
    /// settings acknowledgements and entry.
    pub async fn reap(&self, apps: &Apps) {
        use futures_util::stream::{self, StreamExt};
        let dead = std::mem::take(&mut *self.dead.lock().unwrap_or_else(|e| e.into_inner()));
        let Ok((me, _)) = self.view() else { return };
        for node in dead {
            if node == me {
                continue;
            }
            let mut con = self.redis.con();
            let claimed: Result<Option<String>, _> = self
                .timed(
                    redis::cmd("SET")
                        .arg(keys::node_reaping(&node))
                        .arg(&me)
                        .arg("NX")
                        .arg("PX")
                        .arg(self.settings.lease_ms)
                        .query_async(&mut con),
                )
                .await;
            if !matches!(claimed, Ok(Some(_))) {
                continue;
            }
            let index = keys::node_users(&node);
            let mut cursor = 0u64;
            let mut users = 0usize;
            loop {
                let page: Result<(u64, Vec<String>), _> = self
                    .timed(
                        redis::cmd("SSCAN")
                            .arg(&index)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(500)
                            .query_async(&mut con),
                    )
                    .await;
                let Ok((next, members)) = page else {
                    return; // the claim lapses; a later round (here or elsewhere) redoes it
                };
                users += members.len();
                let failed = stream::iter(members)
                    .map(|member| async move {
                        let Some((app, user)) = member
                            .split_once(':')
                            .and_then(|(a, u)| Some((a.parse::<u32>().ok()?, u.to_owned())))
                        else {
                            return Ok(());
                        };
                        // The dead node's writes to other slots still in the user's
                        // outbox come back with the reply: made here, or the reaping
                        // is not done.
                        let inv = self.invocation(&self.scripts.reap, app, &user)?;
                        let reply = self.invoke_raw(&inv.inv).await?;
                        let (_, writes) = scripts::split_deferred(&reply)?;
                        if self.write_deferred(app, &user, writes).await {
                            Ok(())
                        } else {
                            Err(ClusterError::Unavailable("writes of a dead node".into()))
                        }
                    })
                    .buffer_unordered(REAP_IN_FLIGHT)
                    .filter(|r| std::future::ready(r.is_err()))
                    .count()
                    .await;
                if failed > 0 {
                    return;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            let mut pipe = redis::pipe();
            pipe.del(&index)
                .ignore()
                .del(keys::node_stream(&node))
                .ignore()
                .zrem(keys::NODES, &node)
                .ignore()
                .del(keys::node_reaping(&node))
                .ignore();
            for app in apps.iter() {
                pipe.hdel(&keys::settings_keys(app.sdkappid)[2], &node)
                    .ignore();
            }
            let done: Result<(), _> = self.timed(con.exec_pipe(&pipe)).await;
            match done {
                Ok(()) => {
                    self.metrics.nodes_reaped.inc();
                    tracing::info!(dead = %node, users, "reaped a dead node's slots");
                }
                Err(e) => tracing::debug!(error = %e, "reaping not finished"),
            }
        }
    }

    /// Reads this node's stream from its cursor until the node id changes (a fence), the
    /// node shuts down (`Ok`) or the connection drops (`Err`); the caller reads again.
    pub(super) async fn read_stream(
        self: &Arc<Self>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(), ClusterError> {
        let node = self.liveness().node.clone();
        let stream = keys::node_stream(&node);
        let mut con = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            self.redis.blocking(
                &stream,
                &format!("tim-stream-{node}"),
                REDIS_TIMEOUT,
                STREAM_BLOCK + REDIS_TIMEOUT,
            ),
        )
        .await
        .map_err(|_| ClusterError::Unavailable("no answer from Redis".into()))??;
        tracing::info!(node = %node, "reading the node stream");
        loop {
            let cursor = {
                let l = self.liveness();
                if l.node != node {
                    return Ok(()); // fenced: read the new id's stream
                }
                l.cursor.clone()
            };
            let mut xread = redis::cmd("XREAD");
            xread
                .arg("COUNT")
                .arg(STREAM_BATCH)
                .arg("BLOCK")
                .arg(STREAM_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(keys::node_stream(&node))
                .arg(&cursor);
            let read = xread.query_async::<Value>(&mut con);
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.stream_moved.notified() => return Ok(()),
                r = read => r?,
            };
            let entries = stream_entries(&reply)?;
            let mut last = None;
            for (id, payload) in entries {
                match scripts::channel_message(&payload) {
                    Ok((session, notice)) => {
                        self.metrics.channel_notices.inc();
                        self.held.apply(session, notice);
                    }
                    Err(e) => tracing::warn!(error = %e, "bad node stream entry"),
                }
                last = Some(id);
            }
            if let Some(last) = last {
                let mut l = self.liveness();
                if l.node == node {
                    l.cursor = last;
                }
            }
        }
    }
}

/// `XREAD`'s reply for one stream, as (id, `n` field) pairs; nil (timeout) is none.
fn stream_entries(reply: &Value) -> Result<Vec<(String, String)>, BadReply> {
    let mut out = Vec::new();
    // RESP2: [[key, [[id, [field, value, ...]], ...]]]; RESP3 may send a map.
    let streams: Vec<&Value> = match reply {
        Value::Nil => return Ok(out),
        Value::Array(items) => items.iter().collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).collect(),
        _ => return Err(BadReply(format!("XREAD: {reply:?}"))),
    };
    for stream in streams {
        let entries = match stream {
            Value::Array(kv) if kv.len() == 2 => &kv[1],
            other => other,
        };
        for entry in array(entries)? {
            let [id, fields] = array(entry)? else {
                return Err(BadReply(format!("XREAD entry: {entry:?}")));
            };
            let fields = array(fields)?;
            let payload = fields
                .chunks(2)
                .find(|kv| kv.first().and_then(|k| text(k).ok()).as_deref() == Some("n"))
                .and_then(|kv| kv.get(1))
                .map(text)
                .transpose()?
                .unwrap_or_default();
            out.push((text(id)?, payload));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn xread_replies_parse() {
        assert!(stream_entries(&Value::Nil).unwrap().is_empty());
        let entry = |id: &str, payload: &str| {
            Value::Array(vec![bulk(id), Value::Array(vec![bulk("n"), bulk(payload)])])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("tim:node:ab:k"),
            Value::Array(vec![
                entry("1-0", "K|7|multipleAccount"),
                entry("1-1", "S|8|"),
            ]),
        ])]);
        assert_eq!(
            stream_entries(&reply).unwrap(),
            [
                ("1-0".to_owned(), "K|7|multipleAccount".to_owned()),
                ("1-1".to_owned(), "S|8|".to_owned())
            ]
        );
        assert!(stream_entries(&Value::Int(3)).is_err());
    }
}
