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

use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};
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
/// Delivered events removed from the outbox in one store commit or Redis call at most.
const ACK_BATCH: usize = 512;
/// Events read from the outbox in one store or Redis call at most.
const READ_BATCH: usize = 512;

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
    users: HashMap<String, UserQueue>,
    /// Users whose next event may go now.
    ready: VecDeque<String>,
    /// Users waiting for a retry.
    retries: BinaryHeap<Reverse<(Instant, String)>>,
    buffered: usize,
}

impl State {
    fn push(&mut self, q: Queued) {
        self.buffered += 1;
        let user = q.event.u.clone();
        let uq = self.users.entry(user.clone()).or_default();
        uq.events.push_back(q);
        if uq.events.len() == 1 && !uq.busy && uq.attempts == 0 {
            self.ready.push_back(user);
        }
    }
}

/// The outbox reader: its own cursor, read ahead into the deliverer's channel (which
/// bounds it), woken by this process's enqueues or every [`POLL`]. Runs apart from the
/// deliverer so that a slow store or Redis round trip never holds requests back.
async fn read_loop(outbox: Outbox, app: u32, wake: Arc<Notify>, tx: mpsc::Sender<Queued>) {
    let mut cursor: Option<String> = None;
    loop {
        match outbox.read(app, cursor.as_deref(), READ_BATCH).await {
            Ok(items) if !items.is_empty() => {
                for q in items {
                    cursor = Some(q.id.clone());
                    if tx.send(q).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(app, error = %e, "callbacks: outbox unreadable"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Removes delivered events from the outbox, in batches (whatever was delivered while the
/// previous batch was being removed), apart from the deliverer. A failed removal only means
/// the event is sent again after a restart or a move (a duplicate after a failure).
async fn ack_loop(outbox: Outbox, app: u32, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = rx.recv().await {
        let mut ids = vec![first];
        while ids.len() < ACK_BATCH {
            match rx.try_recv() {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
        for attempt in 1..=3 {
            match outbox.ack(app, ids.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(app, attempt, error = %e, "callbacks: delivered events not removed yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The reader of the current ownership.
struct Reader {
    task: JoinHandle<()>,
    rx: mpsc::Receiver<Queued>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next_read(reader: &mut Option<Reader>) -> Option<Queued> {
    match reader {
        Some(r) => r.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Deliverer {
    pub async fn run(self, shutdown: CancellationToken) {
        let client = Arc::new(Client::new(self.endpoint.clone()));
        let mut state = State::default();
        let mut inflight: JoinSet<Done> = JoinSet::new();
        let mut reader: Option<Reader> = None;
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(ack_loop(self.outbox.clone(), self.app, ack_rx));
        let mut next_renew = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_renew {
                next_renew = now + RENEW;
                match self.outbox.own(self.app).await {
                    Ownership::Held if reader.is_some() => {}
                    Ownership::Held | Ownership::Taken => {
                        if reader.is_some() {
                            tracing::info!(app = self.app, "callbacks: delivery lease taken again");
                        }
                        // The old reader stops first: the new one reads from the oldest.
                        drop(reader.take());
                        drain(&mut inflight).await;
                        state = State::default();
                        let (tx, rx) = mpsc::channel(BUFFERED);
                        reader = Some(Reader {
                            task: tokio::spawn(read_loop(
                                self.outbox.clone(),
                                self.app,
                                Arc::clone(&self.wake),
                                tx,
                            )),
                            rx,
                        });
                        if let Some(node) = &self.node {
                            tracing::info!(app = self.app, node, "callbacks: this node delivers");
                        }
                    }
                    Ownership::Elsewhere => {
                        if reader.is_some() {
                            tracing::info!(
                                app = self.app,
                                "callbacks: delivery moved to another node"
                            );
                        }
                        reader = None;
                        drain(&mut inflight).await;
                        state = State::default();
                    }
                }
                self.refresh_gauges().await;
            }
            if reader.is_some() {
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
            }
            let wait_until = state
                .retries
                .peek()
                .map_or(next_renew, |Reverse((t, _))| (*t).min(next_renew));
            tokio::select! {
                _ = shutdown.cancelled() => {
                    drop(reader);
                    inflight.abort_all();
                    // What was delivered is removed before the process goes (else it is
                    // sent again after the restart).
                    drop(ack_tx);
                    let _ = tokio::time::timeout(Duration::from_secs(2), acker).await;
                    return;
                }
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Ok(done) = done {
                        self.finished(&mut state, done, &ack_tx);
                    }
                    while let Some(Ok(done)) = inflight.try_join_next() {
                        self.finished(&mut state, done, &ack_tx);
                    }
                }
                Some(q) = next_read(&mut reader), if state.buffered < BUFFERED => {
                    state.push(q);
                    while state.buffered < BUFFERED {
                        match reader.as_mut().map(|r| r.rx.try_recv()) {
                            Some(Ok(q)) => state.push(q),
                            _ => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wait_until) => {}
            }
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

    fn finished(&self, state: &mut State, done: Done, acks: &mpsc::UnboundedSender<String>) {
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
                let _ = acks.send(done.item.id.clone());
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
            // Events the decision scripts appended (cluster mode) are trimmed to the cap
            // here, by the delivering node, once a second: the oldest go, counted and logged.
            if len > u64::from(self.settings.queue_cap) {
                match self.outbox.trim(self.app, self.settings.queue_cap).await {
                    Ok(0) => {}
                    Ok(dropped) => {
                        self.metrics.dropped("cap", dropped);
                        tracing::warn!(
                            app = self.app,
                            dropped,
                            cap = self.settings.queue_cap,
                            "callback queue full: the oldest events were dropped"
                        );
                    }
                    Err(e) => {
                        tracing::debug!(app = self.app, error = %e, "callback queue not trimmed")
                    }
                }
            }
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
    let event_id = if item.event.id.is_empty() {
        format!("{app}-{}", item.id)
    } else {
        item.event.id.clone()
    };
    let body = request::body(&item.event, &event_id);
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
