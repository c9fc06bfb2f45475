//! The durable outbox of callback events, behind the backend seam: the deliverer never asks
//! which one runs.
//!
//! - Embedded: the `callback_outbox` table of the SQLite store, written through the store
//!   thread (batched commits): an event is durable before the client hears the answer.
//! - Cluster: a Redis stream per app (`tim:cb:{APP}`, `cluster/callbacks.rs`), written by
//!   the decision scripts themselves (logins, resumes, logouts, expiries, a dead node's
//!   sessions: `prelude.lua`'s `report`, through the two-step path), and by the node for
//!   what no script decides (a closed socket, a REST kick reaching a socket) or a script
//!   run before the node had the app's callback on. One live node at a time delivers an app's stream (a lease,
//!   `tim:cb:{APP}:owner`): per-user order needs one reader, and when it dies another node
//!   takes the lease over and delivers what was left, including what the dead one had in
//!   flight (delivered again: at least once).

use std::sync::Arc;

use super::StateChange;
use crate::cluster::Cluster;
use crate::store::StoreHandle;

/// One queued event and its id in the outbox (`EventID` is `<app>-<id>`).
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: String,
    pub event: StateChange,
}

/// Where events wait.
#[derive(Clone)]
pub enum Outbox {
    Embedded(StoreHandle),
    Cluster(Arc<Cluster>),
}

impl Outbox {
    /// Stores `event` for `app`, durably; beyond `cap` waiting, the oldest go. Returns how
    /// many went.
    pub async fn enqueue(&self, app: u32, event: &StateChange, cap: u32) -> Result<u64, String> {
        let json = serde_json::to_string(event).map_err(|e| e.to_string())?;
        match self {
            Outbox::Embedded(store) => {
                let t = event.t;
                store
                    .call(move |s| s.callback_push(app, &json, t, u64::from(cap)))
                    .await
                    .map_err(|e| e.to_string())
            }
            Outbox::Cluster(c) => c
                .callback_push(app, &json, cap)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Up to `max` events of `app` after `after` (from the start with `None`), oldest first.
    /// An entry that does not parse is skipped (logged).
    pub async fn read(
        &self,
        app: u32,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<Queued>, String> {
        let raw: Vec<(String, String)> = match self {
            Outbox::Embedded(store) => {
                let after = after.and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
                store
                    .call(move |s| s.callback_read(app, after, max))
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|(id, e)| (id.to_string(), e))
                    .collect()
            }
            Outbox::Cluster(c) => c
                .callback_read(app, after, max)
                .await
                .map_err(|e| e.to_string())?,
        };
        let mut out = Vec::with_capacity(raw.len());
        let mut unreadable = Vec::new();
        for (id, json) in raw {
            match serde_json::from_str(&json) {
                Ok(event) => out.push(Queued { id, event }),
                Err(e) => {
                    tracing::error!(app, id, error = %e, "callback event unreadable: dropped");
                    unreadable.push(id);
                }
            }
        }
        self.ack(app, unreadable).await?;
        Ok(out)
    }

    /// Removes delivered events.
    pub async fn ack(&self, app: u32, ids: Vec<String>) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            Outbox::Embedded(store) => {
                let ids: Vec<i64> = ids.iter().filter_map(|i| i.parse().ok()).collect();
                store
                    .call(move |s| s.callback_remove(app, &ids))
                    .await
                    .map_err(|e| e.to_string())
            }
            Outbox::Cluster(c) => c
                .callback_remove(app, &ids)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Drops the oldest of `app`'s events beyond `cap`; returns how many went (embedded:
    /// every push keeps the cap already).
    pub async fn trim(&self, app: u32, cap: u32) -> Result<u64, String> {
        match self {
            Outbox::Embedded(_) => Ok(0),
            Outbox::Cluster(c) => c.callback_trim(app, cap).await.map_err(|e| e.to_string()),
        }
    }

    /// How many events wait for `app`, and when the oldest was queued (unix ms).
    pub async fn stats(&self, app: u32) -> Result<(u64, Option<u64>), String> {
        match self {
            Outbox::Embedded(store) => store
                .call(move |s| s.callback_stats(app))
                .await
                .map_err(|e| e.to_string()),
            Outbox::Cluster(c) => c.callback_stats(app).await.map_err(|e| e.to_string()),
        }
    }

    /// From now on the backend's decisions store `app`'s events themselves (cluster: its
    /// scripts, in the same step as the decision; embedded: nothing to do, the gateway and
    /// the store's transactions do).
    pub fn announce(&self, app: u32) {
        if let Outbox::Cluster(c) = self {
            c.callbacks_on(app);
        }
    }

    /// Whether this process may deliver `app`'s events now (embedded: always; cluster: it
    /// holds, or just took, the app's delivery lease). `Taken` means it just took it over:
    /// the deliverer starts again from the oldest event.
    pub async fn own(&self, app: u32) -> Ownership {
        match self {
            Outbox::Embedded(_) => Ownership::Held,
            Outbox::Cluster(c) => match c.callback_lease(app).await {
                Ok(Some(true)) => Ownership::Taken,
                Ok(Some(false)) => Ownership::Held,
                Ok(None) => Ownership::Elsewhere,
                Err(e) => {
                    tracing::debug!(app, error = %e, "callback lease not renewed");
                    Ownership::Elsewhere
                }
            },
        }
    }
}

/// Whether a node delivers an app's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// It did already.
    Held,
    /// It starts now.
    Taken,
    /// Another node does (or Redis is unreachable).
    Elsewhere,
}
