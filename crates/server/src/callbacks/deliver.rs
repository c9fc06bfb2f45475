//! One app's deliverer: reads the outbox oldest first and POSTs each event to the app's
//! receiver.
//!
//! - **Per user in order**: a user's events wait in their own queue; its next event goes
//!   only once the previous one was accepted. Different users go in parallel, at most
//!   `max_in_flight` requests at once.
//! - **At least once**: an event leaves the outbox only after the receiver accepted it
//!   (HTTP 2xx, `ErrorCode` 0). A failure (non-2xx, `ErrorCode` != 0, timeout, no
//!   connection) retries that user's event with backoff ([`backoff`]), forever: the cap on
//!   the outbox bounds what waits. A restart, or another node taking the delivery over,
//!   starts again from the oldest event still stored (what was in flight is sent again:
//!   receivers drop duplicates by `EventID`).
//! - **Bounded memory**: at most [`BUFFERED`] events are read ahead.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::http::{Client, Endpoint};
use super::outbox::{Ownership, Queued};
use super::{request, CallbackSettings, Outbox};
use crate::metrics::CallbackMetrics;

/// Events read ahead of delivery at most.
pub const BUFFERED: usize = 4096;
/// How often the outbox is looked at when nothing woke the deliverer (events queued by
/// another node, or retries due).
const POLL: Duration = Duration::from_millis(100);
/// How often the cluster lease is renewed (and the gauges refreshed).
const RENEW: Duration = Duration::from_secs(1);
/// Delivered events are removed from the outbox in batches: at most this many, or after
/// at most [`ACK_EVERY`] (a removal is a store commit or a Redis call).
const ACK_BATCH: usize = 256;
const ACK_EVERY: Duration = Duration::from_millis(50);

/// The wait before retry number `attempt` (1-based): 250 ms doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(7));
    Duration::from_millis(ms.min(30_000))
}

pub struct Deliverer {
    pub app: u32,
    pub endpoint: Endpoint,
    pub token: Option<String>,
    pub settings: CallbackSettings,
    pub outbox: Outbox,
    pub metrics: CallbackMetrics,
    pub wake: Arc<Notify>,
    pub node: Option<String>,
}

/// What one request came to.
struct Done {
    user: String,
    item: Queued,
    result: Result<(), &'static str>,
}

#[derive(Default)]
struct UserQueue {
    events: VecDeque<Queued>,
    busy: bool,
    attempts: u32,
}

/// The deliverer's read-ahead state (dropped when the cluster lease moves).
#[derive(Default)]
struct State {
    /// The last id read.
    cursor: Option<String>,
    users: HashMap<String, UserQueue>,
    /// Users whose next event may go now.
    ready: VecDeque<String>,
    /// Users waiting for a retry.
    retries: BinaryHeap<Reverse<(Instant, String)>>,
    buffered: usize,
    to_ack: Vec<String>,
    /// When `to_ack` must be written at the latest.
    ack_due: Option<Instant>,
}

impl State {
    fn push(&mut self, q: Queued) {
        self.cursor = Some(q.id.clone());
        self.buffered += 1;
        let user = q.event.u.clone();
        let uq = self.users.entry(user.clone()).or_default();
        uq.events.push_back(q);
        if uq.events.len() == 1 && !uq.busy && uq.attempts == 0 {
            self.ready.push_back(user);
        }
    }
}

impl Deliverer {
    pub async fn run(self, shutdown: CancellationToken) {
        let client = Arc::new(Client::new(self.endpoint.clone()));
        let mut state = State::default();
        let mut inflight: JoinSet<Done> = JoinSet::new();
        let mut owned = false;
        let mut next_renew = Instant::now();
        // Whether to look at the outbox: when woken (this process queued something) or
        // every POLL, not after each delivery (a read is a store or Redis round trip).
        let mut look = true;
        loop {
            let now = Instant::now();
            if now >= next_renew {
                next_renew = now + RENEW;
                match self.outbox.own(self.app).await {
                    Ownership::Held if owned => {}
                    Ownership::Held | Ownership::Taken => {
                        if owned {
                            tracing::info!(app = self.app, "callbacks: delivery lease taken again");
                        }
                        owned = true;
                        look = true;
                        drain(&mut inflight).await;
                        state = State::default();
                        if let Some(node) = &self.node {
                            tracing::info!(app = self.app, node, "callbacks: this node delivers");
                        }
                    }
                    Ownership::Elsewhere => {
                        if owned {
                            tracing::info!(
                                app = self.app,
                                "callbacks: delivery moved to another node"
                            );
                        }
                        owned = false;
                        drain(&mut inflight).await;
                        state = State::default();
                    }
                }
                self.refresh_gauges().await;
            }
            if owned {
                if std::mem::take(&mut look) {
                    self.fill(&mut state).await;
                }
                self.release_retries(&mut state);
                while inflight.len() < self.settings.max_in_flight as usize {
                    let Some(user) = state.ready.pop_front() else {
                        break;
                    };
                    let Some(uq) = state.users.get_mut(&user) else {
                        continue;
                    };
                    let Some(item) = uq.events.front().cloned() else {
                        continue;
                    };
                    uq.busy = true;
                    inflight.spawn(send(
                        Arc::clone(&client),
                        self.app,
                        self.token.clone(),
                        self.settings.timeout(),
                        user,
                        item,
                    ));
                }
                let ack_now = state.to_ack.len() >= ACK_BATCH
                    || inflight.is_empty()
                    || state.ack_due.is_some_and(|t| t <= Instant::now());
                if !state.to_ack.is_empty() && ack_now {
                    state.ack_due = None;
                    let ids = std::mem::take(&mut state.to_ack);
                    if let Err(e) = self.outbox.ack(self.app, ids.clone()).await {
                        // Kept: acknowledged again next time (sent again after a restart).
                        tracing::warn!(app = self.app, error = %e, "callbacks: delivered events not removed yet");
                        state.to_ack = ids;
                    }
                }
            }
            let wait_until = state
                .retries
                .peek()
                .map_or(now + POLL, |Reverse((t, _))| (*t).min(now + POLL))
                .min(next_renew)
                .min(state.ack_due.unwrap_or(next_renew));
            tokio::select! {
                _ = shutdown.cancelled() => {
                    inflight.abort_all();
                    if !state.to_ack.is_empty() {
                        let _ = self.outbox.ack(self.app, state.to_ack).await;
                    }
                    return;
                }
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Ok(done) = done {
                        self.finished(&mut state, done);
                    }
                    // Take every other finished one too before looking at the outbox again.
                    while let Some(Ok(done)) = inflight.try_join_next() {
                        self.finished(&mut state, done);
                    }
                }
                _ = self.wake.notified() => look = true,
                _ = tokio::time::sleep_until(wait_until) => look = true,
            }
        }
    }

    /// Reads what fits into the read-ahead.
    async fn fill(&self, state: &mut State) {
        let room = BUFFERED.saturating_sub(state.buffered);
        if room == 0 {
            return;
        }
        match self
            .outbox
            .read(self.app, state.cursor.as_deref(), room)
            .await
        {
            Ok(items) => {
                for q in items {
                    state.push(q);
                }
            }
            Err(e) => tracing::warn!(app = self.app, error = %e, "callbacks: outbox unreadable"),
        }
    }

    fn release_retries(&self, state: &mut State) {
        let now = Instant::now();
        while let Some(Reverse((t, _))) = state.retries.peek() {
            if *t > now {
                break;
            }
            let Reverse((_, user)) = state.retries.pop().expect("peeked");
            state.ready.push_back(user);
        }
    }

    fn finished(&self, state: &mut State, done: Done) {
        let Some(uq) = state.users.get_mut(&done.user) else {
            return;
        };
        uq.busy = false;
        match done.result {
            Ok(()) => {
                if uq.attempts > 0 {
                    tracing::info!(app = self.app, user = %done.user, attempts = uq.attempts + 1, "callback delivered after retries");
                }
                uq.attempts = 0;
                uq.events.pop_front();
                state.buffered -= 1;
                state.to_ack.push(done.item.id);
                state
                    .ack_due
                    .get_or_insert_with(|| Instant::now() + ACK_EVERY);
                self.metrics.sent();
                let age = crate::clock::unix_ms().saturating_sub(done.item.event.t);
                self.metrics.latency(Duration::from_millis(age));
                if uq.events.is_empty() {
                    state.users.remove(&done.user);
                } else {
                    state.ready.push_back(done.user);
                }
            }
            Err(cause) => {
                uq.attempts += 1;
                self.metrics.failed(cause);
                self.metrics.retry();
                let wait = backoff(uq.attempts);
                if uq.attempts == 1 || uq.attempts % 10 == 0 {
                    tracing::warn!(app = self.app, user = %done.user, cause, attempts = uq.attempts,
                        retry_in_ms = wait.as_millis() as u64, "callback not accepted: retrying");
                }
                state
                    .retries
                    .push(Reverse((Instant::now() + wait, done.user)));
            }
        }
    }

    async fn refresh_gauges(&self) {
        if let Ok((len, oldest)) = self.outbox.stats(self.app).await {
            let age = oldest.map_or(0, |t| crate::clock::unix_ms().saturating_sub(t));
            self.metrics.queue(self.app, len, age);
        }
    }
}

/// Stops every request in flight (their events are read and sent again).
async fn drain(inflight: &mut JoinSet<Done>) {
    inflight.abort_all();
    while inflight.join_next().await.is_some() {}
}

/// One POST of `item`, and what the receiver made of it.
async fn send(
    client: Arc<Client>,
    app: u32,
    token: Option<String>,
    timeout: Duration,
    user: String,
    item: Queued,
) -> Done {
    let query = request::query(
        app,
        &item.event,
        token.as_deref(),
        crate::clock::unix_secs(),
    );
    let body = request::body(&item.event, &format!("{app}-{}", item.id));
    let result = match client.post(&query, body, timeout).await {
        Ok((status, answer)) => request::accepted(status, &answer),
        Err(f) => Err(f.label()),
    };
    Done { user, item, result }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_30_s() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_secs(4));
        assert_eq!(backoff(100), Duration::from_secs(30));
    }
}
