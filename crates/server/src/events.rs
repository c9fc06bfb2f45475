//! What happens to sessions, as the operator's console shows it (`/v4/timd/get_events`,
//! `get_event_counts`): one small [`Event`] per login, resume, logout, disconnect and kick,
//! emitted where the socket task learns of it (`gateway.rs`), and the per-app hub
//! ([`Events`]) that keeps the recent ones and counts logins and kicks per minute.
//!
//! Node-local on purpose: the hub holds what this process saw. In cluster mode the backend
//! relays it (`cluster/console.rs`): each node publishes its events for the others, which
//! put them in their own hub, and adds its per-minute counts to Redis, where any node reads
//! the cluster's. The State.StateChange callbacks (`callbacks/`) are reported at these same
//! emission points, but durably and at least once, which this feed is not.
//!
//! Best effort, as a feed is: a kick of an instance whose socket is already gone (away,
//! waiting for a resume) is not an event (its resume learns of it instead), and in cluster
//! mode an event published while a node was resubscribing is lost for that node's console
//! (the per-minute counts in Redis are not).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tim_proto::{KickReason, Platform};
use tokio::sync::watch;

use crate::clock::unix_ms;
use crate::session::InstanceInfo;

/// Events kept per app for the feed.
pub const RING: usize = 500;
/// Minutes of counts kept (the console's chart: the last hour, plus the current minute).
pub const MINUTES: u64 = 61;
/// Events a node relays to the others per flush (cluster mode; 400 a second at a flush
/// every 0.5 s): a feed is read by people, and a login storm must not turn into megabytes of
/// pub/sub for every node to parse. Beyond it events stay in this node's own feed only; the
/// per-minute counts stay exact.
pub const OUTBOX_MAX: usize = 200;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A login with a UserSig was admitted (`Kicked` says how many it kicked).
    Login,
    /// A reconnect took its slot back with its ticket.
    Resume,
    /// The instance logged out (or logged in again on the same socket).
    Logout,
    /// The socket closed without a logout: the slot waits for a resume. `Reason`:
    /// `LinkClose` (closed) or `TimeOut` (heartbeat lost).
    Disconnect,
    /// The instance was kicked; `Reason` is the `KICKED_OUT` type.
    Kicked,
}

/// One event, as the REST API and the cluster's channel spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique across the cluster: `<stream>-<n>` of the process that saw it.
    #[serde(rename = "Id")]
    pub id: String,
    /// Unix ms.
    #[serde(rename = "Time")]
    pub time: u64,
    #[serde(rename = "SDKAppID")]
    pub app: u32,
    #[serde(rename = "UserID")]
    pub user: String,
    #[serde(rename = "Instance")]
    pub instance: String,
    #[serde(rename = "Platform")]
    pub platform: Platform,
    #[serde(rename = "Kind")]
    pub kind: EventKind,
    /// Kicked: the kicked-out type; Disconnect: `LinkClose` / `TimeOut`; Login: `Register`;
    /// Logout: `Unregister`; Resume: `Resume`.
    #[serde(rename = "Reason")]
    pub reason: String,
    /// Login: how many instances it kicked.
    #[serde(rename = "Kicked", default)]
    pub kicked: u32,
    /// Cluster mode: the node holding the socket (empty in embedded mode).
    #[serde(rename = "Node", default)]
    pub node: String,
}

/// Why a socket closed without a logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The peer closed it, or the network dropped it.
    LinkClose,
    /// No heartbeat within the idle timeout.
    TimeOut,
}

/// One minute's counts: logins (not resumes) and kicks, of the whole app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    /// The minute's first second (unix seconds, a multiple of 60).
    #[serde(rename = "Minute")]
    pub minute: u64,
    #[serde(rename = "Logins")]
    pub logins: u64,
    #[serde(rename = "Kicks")]
    pub kicks: u64,
}

impl MinuteCount {
    /// What `event` adds to its minute: (logins, kicks).
    pub fn of(event: &Event) -> (u64, u64) {
        match event.kind {
            EventKind::Login => (1, 0),
            EventKind::Kicked => (0, 1),
            _ => (0, 0),
        }
    }
}

/// The minutes `[now_minute - MINUTES + 1, now_minute]`, oldest first, each with what
/// `count` says of it.
pub fn last_hour(now_ms: u64, mut count: impl FnMut(u64) -> (u64, u64)) -> Vec<MinuteCount> {
    let current = now_ms / 60_000 * 60;
    (0..MINUTES)
        .rev()
        .map(|back| {
            let minute = current.saturating_sub(back * 60);
            let (logins, kicks) = count(minute);
            MinuteCount {
                minute,
                logins,
                kicks,
            }
        })
        .collect()
}

/// What a feed read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// This process's stream: a cursor is only meaningful to the stream that made it.
    pub stream: String,
    /// The cursor of the next read.
    pub next: u64,
    /// Oldest first.
    pub events: Vec<Event>,
}

#[derive(Default)]
struct Feed {
    /// (cursor, event), oldest first.
    ring: VecDeque<(u64, Event)>,
    next: u64,
    /// (minute, logins, kicks) of this process's own events, oldest first.
    minutes: VecDeque<MinuteCount>,
}

impl Feed {
    fn push(&mut self, event: Event) {
        self.next += 1;
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back((self.next, event));
    }

    fn count(&mut self, event: &Event) {
        let (logins, kicks) = MinuteCount::of(event);
        if logins + kicks == 0 {
            return;
        }
        let minute = event.time / 60_000 * 60;
        match self.minutes.back_mut() {
            Some(m) if m.minute == minute => {
                m.logins += logins;
                m.kicks += kicks;
            }
            _ => self.minutes.push_back(MinuteCount {
                minute,
                logins,
                kicks,
            }),
        }
        while self
            .minutes
            .front()
            .is_some_and(|m| m.minute + MINUTES * 60 <= minute)
        {
            self.minutes.pop_front();
        }
    }
}

/// The per-app feeds of this process, and what it still has to publish (cluster mode).
pub struct Events {
    stream: String,
    seq: AtomicU64,
    feeds: Mutex<HashMap<u32, Feed>>,
    /// Bumped on every new event: a waiting read wakes and looks.
    changed: watch::Sender<u64>,
    /// Cluster mode: this process's events not yet published, and counts not yet added.
    outbox: Mutex<Option<Outbox>>,
}

/// What the cluster's relay takes from the hub at each flush.
#[derive(Debug, Default)]
pub struct Outbox {
    pub events: Vec<Event>,
    /// (app, minute) -> (logins, kicks).
    pub counts: HashMap<(u32, u64), (u64, u64)>,
    /// Events not relayed because the outbox was full.
    pub dropped: u64,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        Events {
            stream: stream_id(),
            seq: AtomicU64::new(0),
            feeds: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            outbox: Mutex::new(None),
        }
    }

    /// This process's stream id (the `Stream` of a feed read).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// From now on this process's events are also kept for [`Events::take_outbox`] (the
    /// cluster's relay).
    pub fn relay(&self) {
        lock(&self.outbox).get_or_insert_with(Outbox::default);
    }

    /// Takes what waits to be published (cluster mode); empty when not relaying.
    pub fn take_outbox(&self) -> Outbox {
        lock(&self.outbox)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Puts back counts a flush could not add (Redis unreachable): the next flush adds
    /// them (events are not put back: the feed moved on).
    pub fn restore_counts(&self, counts: HashMap<(u32, u64), (u64, u64)>) {
        if let Some(outbox) = lock(&self.outbox).as_mut() {
            for (key, (l, k)) in counts {
                let e = outbox.counts.entry(key).or_default();
                e.0 += l;
                e.1 += k;
            }
        }
    }

    fn new_event(
        &self,
        info: &InstanceInfo,
        kind: EventKind,
        reason: &str,
        kicked: usize,
    ) -> Event {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        Event {
            id: format!("{}-{n}", self.stream),
            time: unix_ms(),
            app: info.app,
            user: info.user.clone(),
            instance: info.instance.clone(),
            platform: info.platform,
            kind,
            reason: reason.to_owned(),
            kicked: u32::try_from(kicked).unwrap_or(u32::MAX),
            node: info.node.clone(),
        }
    }

    /// A login admitted for `info`, kicking `kicked` instances.
    pub fn login(&self, info: &InstanceInfo, kicked: usize) {
        self.emit(self.new_event(info, EventKind::Login, "Register", kicked));
    }

    pub fn resume(&self, info: &InstanceInfo) {
        self.emit(self.new_event(info, EventKind::Resume, "Resume", 0));
    }

    pub fn logout(&self, info: &InstanceInfo) {
        self.emit(self.new_event(info, EventKind::Logout, "Unregister", 0));
    }

    pub fn disconnect(&self, info: &InstanceInfo, why: Disconnect) {
        let reason = match why {
            Disconnect::LinkClose => "LinkClose",
            Disconnect::TimeOut => "TimeOut",
        };
        self.emit(self.new_event(info, EventKind::Disconnect, reason, 0));
    }

    pub fn kicked(&self, info: &InstanceInfo, reason: KickReason) {
        self.emit(self.new_event(info, EventKind::Kicked, reason.as_str(), 0));
    }

    /// Records one of this process's events: in its app's feed and counts, and (cluster
    /// mode) for the relay.
    pub fn emit(&self, event: Event) {
        if let Some(outbox) = lock(&self.outbox).as_mut() {
            let (logins, kicks) = MinuteCount::of(&event);
            if logins + kicks > 0 {
                let e = outbox
                    .counts
                    .entry((event.app, event.time / 60_000 * 60))
                    .or_default();
                e.0 += logins;
                e.1 += kicks;
            }
            if outbox.events.len() < OUTBOX_MAX {
                outbox.events.push(event.clone());
            } else {
                outbox.dropped += 1;
            }
        }
        {
            let mut feeds = lock(&self.feeds);
            let feed = feeds.entry(event.app).or_default();
            feed.count(&event);
            feed.push(event);
        }
        self.wake_readers();
    }

    /// Wakes the reads waiting for a new event (`rest/console.rs`), if any wait: with none
    /// (every login when no console is open), no lock is taken. A read subscribes before it
    /// looks at the feed, so one that starts meanwhile finds the event there.
    fn wake_readers(&self) {
        if self.changed.receiver_count() > 0 {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Records events another node saw (cluster mode): in the feed only (the counts are
    /// Redis's).
    pub fn relayed(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        {
            let mut feeds = lock(&self.feeds);
            for event in events {
                feeds.entry(event.app).or_default().push(event);
            }
        }
        self.wake_readers();
    }

    /// `app`'s events after cursor `after` of `stream` (oldest first, at most `max`: the
    /// newest ones). A cursor of another stream (another node, or before a restart) reads
    /// from the start of what is kept.
    pub fn read(&self, app: u32, stream: Option<&str>, after: u64, max: usize) -> Page {
        let after = if stream == Some(self.stream.as_str()) {
            after
        } else {
            0
        };
        let feeds = lock(&self.feeds);
        let (next, events) = match feeds.get(&app) {
            None => (0, Vec::new()),
            Some(feed) => {
                let newer: Vec<&(u64, Event)> =
                    feed.ring.iter().filter(|(n, _)| *n > after).collect();
                let skip = newer.len().saturating_sub(max);
                (
                    feed.next,
                    newer[skip..].iter().map(|(_, e)| e.clone()).collect(),
                )
            }
        };
        Page {
            stream: self.stream.clone(),
            next,
            events,
        }
    }

    /// A receiver that sees a change at every event recorded after this call (any app).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// This process's own logins and kicks per minute in `app`, the last hour, oldest
    /// first (embedded mode: the app's; cluster mode reads the cluster's from Redis).
    pub fn local_counts(&self, app: u32, now_ms: u64) -> Vec<MinuteCount> {
        let feeds = lock(&self.feeds);
        let minutes = feeds.get(&app).map(|f| &f.minutes);
        last_hour(now_ms, |minute| {
            minutes
                .and_then(|m| m.iter().find(|c| c.minute == minute))
                .map_or((0, 0), |c| (c.logins, c.kicks))
        })
    }
}

/// A stream id unique per process start (random: a restart must not reuse cursors).
fn stream_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one((std::process::id(), unix_ms()));
    format!("{:012x}", n & 0xffff_ffff_ffff)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    fn info(app: u32, user: &str) -> InstanceInfo {
        InstanceInfo {
            session: SessionId(1),
            app,
            user: user.into(),
            instance: "i1".into(),
            platform: Platform::Web,
            since_ms: 1,
            expire_at: 0,
            sig_time: 0,
            attached: true,
            node: String::new(),
        }
    }

    #[test]
    fn a_feed_reads_from_its_cursor_and_keeps_apps_apart() {
        let hub = Events::new();
        hub.login(&info(1, "alice"), 1);
        hub.kicked(&info(1, "bob"), KickReason::MultipleAccount);
        hub.logout(&info(2, "carol"));
        let page = hub.read(1, None, 0, 100);
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.events[0].kind, EventKind::Login);
        assert_eq!(page.events[0].kicked, 1);
        assert_eq!(page.events[1].reason, "multipleAccount");
        assert_ne!(page.events[0].id, page.events[1].id);
        let stream = page.stream.clone();
        assert!(hub.read(1, Some(&stream), page.next, 100).events.is_empty());
        // Another stream's cursor reads what is kept.
        assert_eq!(hub.read(1, Some("other"), page.next, 100).events.len(), 2);
        // At most `max`: the newest.
        let last = hub.read(1, None, 0, 1).events;
        assert_eq!(last[0].user, "bob");
        assert_eq!(hub.read(2, None, 0, 100).events[0].user, "carol");
        assert!(hub.read(3, None, 0, 100).events.is_empty());
    }

    #[test]
    fn the_ring_is_bounded() {
        let hub = Events::new();
        for _ in 0..RING + 10 {
            hub.login(&info(1, "alice"), 0);
        }
        let page = hub.read(1, None, 0, usize::MAX);
        assert_eq!(page.events.len(), RING);
        assert_eq!(page.next, (RING + 10) as u64);
    }

    #[test]
    fn logins_and_kicks_are_counted_per_minute() {
        let hub = Events::new();
        hub.login(&info(1, "alice"), 0);
        hub.resume(&info(1, "alice"));
        hub.kicked(&info(1, "alice"), KickReason::RestApi);
        hub.disconnect(&info(1, "alice"), Disconnect::TimeOut);
        let counts = hub.local_counts(1, unix_ms());
        assert_eq!(counts.len() as u64, MINUTES);
        let now = counts.last().unwrap();
        assert_eq!((now.logins, now.kicks), (1, 1));
        assert!(counts.windows(2).all(|w| w[1].minute == w[0].minute + 60));
        assert!(counts[..counts.len() - 1]
            .iter()
            .all(|c| c.logins + c.kicks == 0));
    }

    #[test]
    fn the_relay_takes_events_and_counts_once() {
        let hub = Events::new();
        hub.login(&info(1, "alice"), 0);
        assert!(hub.take_outbox().events.is_empty(), "not relaying yet");
        hub.relay();
        hub.login(&info(1, "alice"), 0);
        hub.kicked(&info(1, "alice"), KickReason::RestApi);
        let out = hub.take_outbox();
        assert_eq!(out.events.len(), 2);
        let total = out
            .counts
            .values()
            .fold((0, 0), |(l, k), (a, b)| (l + a, k + b));
        assert_eq!(total, (1, 1));
        assert!(hub.take_outbox().events.is_empty());
        hub.restore_counts(out.counts);
        assert_eq!(hub.take_outbox().counts.len(), 1);
        // Relayed events enter the feed but not this process's counts.
        let other = Event {
            id: "x-1".into(),
            ..hub.read(1, None, 0, 1).events[0].clone()
        };
        hub.relayed(vec![other]);
        assert_eq!(hub.read(1, None, 0, 100).events.len(), 4);
    }

    #[test]
    fn the_relay_is_capped_and_the_counts_are_not() {
        let hub = Events::new();
        hub.relay();
        for _ in 0..OUTBOX_MAX + 5 {
            hub.login(&info(1, "alice"), 0);
        }
        let out = hub.take_outbox();
        assert_eq!((out.events.len(), out.dropped), (OUTBOX_MAX, 5));
        let logins: u64 = out.counts.values().map(|(l, _)| l).sum();
        assert_eq!(logins, (OUTBOX_MAX + 5) as u64);
        assert_eq!(
            hub.read(1, None, 0, usize::MAX).events.len(),
            OUTBOX_MAX + 5
        );
    }

    #[test]
    fn events_round_trip_as_json() {
        let hub = Events::new();
        hub.kicked(&info(1, "alice"), KickReason::UserSigExpired);
        let e = hub.read(1, None, 0, 1).events.remove(0);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["Kind"], "Kicked");
        assert_eq!(json["Platform"], "Web");
        assert_eq!(json["SDKAppID"], 1);
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
    }
}
