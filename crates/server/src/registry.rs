//! Who is online: every logged-in instance, per user, with a channel to its socket task.
//!
//! All of one user's instances live in one [`UserSessions`] guarded by one (sharded) mutex,
//! so decisions that look at a user's other instances (instance limits, "kick the earliest",
//! the multi-platform policy) and the kicks they cause happen atomically: two concurrent
//! logins of the same user can never both see room for themselves. The lock is a `std`
//! mutex, held only for in-memory work and non-blocking `try_send`s, never across an await.

use std::collections::hash_map::{HashMap, RandomState};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tim_proto::{KickReason, Platform};
use tokio::sync::mpsc;

/// Shards of the user map: enough that logins of different users rarely share a lock on a
/// small machine, few enough to cost nothing when idle.
const SHARDS: usize = 64;

/// Capacity of a socket's command channel. The registry sends at most one command per
/// session and a socket has at most one live session, and the socket task drains commands
/// before reading further frames, so this never fills in practice.
pub const OUTBOX_CAPACITY: usize = 4;

/// Identifies one login (one session) of one socket. Never reused within a process, so a
/// stale command for an earlier session on the same socket is recognizable and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// What the registry asks a socket task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketCommand {
    /// The session was kicked: send `kicked{reason}`, then close with `close::KICKED`.
    /// The registry entry is already gone.
    Kick {
        session: SessionId,
        reason: KickReason,
    },
    /// The same instance logged in on another socket (e.g. a reconnect raced the old
    /// socket's close): this socket's session is over; close it without a `kicked` frame.
    Superseded { session: SessionId },
}

/// The sending side of a socket task's command channel.
pub type Outbox = mpsc::Sender<SocketCommand>;

/// A login to record.
#[derive(Debug)]
pub struct NewSession {
    pub user: String,
    pub instance: String,
    pub platform: Platform,
    pub ticket: String,
    /// Unix seconds at which the UserSig expires.
    pub expire_at: u64,
    pub outbox: Outbox,
}

/// A snapshot of one online instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub session: SessionId,
    pub user: String,
    pub instance: String,
    pub platform: Platform,
    /// When it logged in, unix milliseconds.
    pub since_ms: u64,
    pub ticket: String,
    pub expire_at: u64,
}

struct Slot {
    info: InstanceInfo,
    outbox: Outbox,
}

impl Slot {
    /// Tells the socket task; never blocks. A closed channel means the socket task is
    /// already ending (and removing its entry): nothing to do.
    fn notify(&self, command: SocketCommand) {
        match self.outbox.try_send(command) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                tracing::warn!(?command, user = %self.info.user, "socket outbox full; command dropped")
            }
        }
    }
}

/// All online instances of one user, in login order (earliest first): the order the
/// "kick the earliest instance on this platform" rule needs.
#[derive(Default)]
pub struct UserSessions {
    slots: Vec<Slot>,
}

impl UserSessions {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Instances on `platform`, earliest first.
    pub fn on_platform(&self, platform: Platform) -> impl Iterator<Item = &InstanceInfo> {
        self.slots
            .iter()
            .map(|s| &s.info)
            .filter(move |i| i.platform == platform)
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstanceInfo> {
        self.slots.iter().map(|s| &s.info)
    }

    fn position(&self, pred: impl Fn(&InstanceInfo) -> bool) -> Option<usize> {
        self.slots.iter().position(|s| pred(&s.info))
    }

    /// Removes the instance and tells its socket why; returns it.
    pub fn kick(&mut self, instance: &str, reason: KickReason) -> Option<InstanceInfo> {
        let i = self.position(|info| info.instance == instance)?;
        let slot = self.slots.remove(i);
        slot.notify(SocketCommand::Kick {
            session: slot.info.session,
            reason,
        });
        Some(slot.info)
    }
}

/// The in-memory session registry. One per process (shared through `AppState`).
pub struct Registry {
    shards: Box<[Mutex<HashMap<String, UserSessions>>]>,
    hasher: RandomState,
    next_session: AtomicU64,
    online: AtomicUsize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            next_session: AtomicU64::new(1),
            online: AtomicUsize::new(0),
        }
    }

    fn shard(&self, user: &str) -> MutexGuard<'_, HashMap<String, UserSessions>> {
        let i = (self.hasher.hash_one(user) as usize) % SHARDS;
        // A panic while holding the lock leaves the map consistent (every mutation is a
        // single Vec/HashMap operation), so a poisoned lock is safe to keep using.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on `user`'s sessions under the user's lock, creating the (empty) entry if
    /// needed and dropping it again if `f` leaves it empty. This is where per-user policy
    /// (limits, kick-earliest) belongs: everything `f` does is atomic for that user.
    pub fn with_user<R>(&self, user: &str, f: impl FnOnce(&mut UserSessions) -> R) -> R {
        let mut shard = self.shard(user);
        if !shard.contains_key(user) {
            shard.insert(user.to_owned(), UserSessions::default());
        }
        let sessions = shard.get_mut(user).expect("entry just ensured");
        let before = sessions.len();
        let result = f(sessions);
        let after = sessions.len();
        if after == 0 {
            shard.remove(user);
        }
        drop(shard);
        self.adjust_online(before, after);
        result
    }

    /// Like [`Registry::with_user`] for an existing entry only (no allocation for unknown
    /// users); `None` if the user has no session.
    fn with_existing<R>(&self, user: &str, f: impl FnOnce(&mut UserSessions) -> R) -> Option<R> {
        let mut shard = self.shard(user);
        let sessions = shard.get_mut(user)?;
        let before = sessions.len();
        let result = f(sessions);
        let after = sessions.len();
        if after == 0 {
            shard.remove(user);
        }
        drop(shard);
        self.adjust_online(before, after);
        Some(result)
    }

    fn adjust_online(&self, before: usize, after: usize) {
        if after > before {
            self.online.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.online.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Records a successful login and returns its session id. An entry for the same
    /// instance on another socket is superseded (its socket is told to close); no other
    /// instance is touched. The next issue adds the per-platform limits and the
    /// multi-platform policy here, inside the same `with_user` closure.
    pub fn register(&self, new: NewSession) -> SessionId {
        let session = SessionId(self.next_session.fetch_add(1, Ordering::Relaxed));
        let since_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let NewSession {
            user,
            instance,
            platform,
            ticket,
            expire_at,
            outbox,
        } = new;
        let slot = Slot {
            info: InstanceInfo {
                session,
                user: user.clone(),
                instance,
                platform,
                since_ms,
                ticket,
                expire_at,
            },
            outbox,
        };
        self.with_user(&user, |sessions| {
            if let Some(i) = sessions.position(|i| i.instance == slot.info.instance) {
                let old = sessions.slots.remove(i);
                old.notify(SocketCommand::Superseded {
                    session: old.info.session,
                });
            }
            sessions.slots.push(slot);
        });
        session
    }

    /// Removes one session (logout, or its socket closed). Returns it if it was still
    /// registered (it is not once kicked or superseded).
    pub fn remove(&self, user: &str, session: SessionId) -> Option<InstanceInfo> {
        self.with_existing(user, |sessions| {
            let i = sessions.position(|i| i.session == session)?;
            Some(sessions.slots.remove(i).info)
        })
        .flatten()
    }

    /// Kicks one instance: removes it and makes its socket send `kicked{reason}` and close
    /// with `close::KICKED`. Returns whether it was online.
    pub fn kick(&self, user: &str, instance: &str, reason: KickReason) -> bool {
        self.with_existing(user, |sessions| sessions.kick(instance, reason).is_some())
            .unwrap_or(false)
    }

    /// Kicks every instance of `user` (REST `kick`). Returns how many were online.
    pub fn kick_user(&self, user: &str, reason: KickReason) -> usize {
        self.with_existing(user, |sessions| {
            let slots = std::mem::take(&mut sessions.slots);
            for slot in &slots {
                slot.notify(SocketCommand::Kick {
                    session: slot.info.session,
                    reason,
                });
            }
            slots.len()
        })
        .unwrap_or(0)
    }

    /// Snapshot of `user`'s online instances, earliest login first.
    pub fn instances(&self, user: &str) -> Vec<InstanceInfo> {
        self.shard(user)
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_online(&self, user: &str, instance: &str) -> bool {
        self.shard(user)
            .get(user)
            .is_some_and(|s| s.iter().any(|i| i.instance == instance))
    }

    /// Online instances across all users.
    pub fn online_count(&self) -> usize {
        self.online.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(
        r: &Registry,
        user: &str,
        instance: &str,
    ) -> (SessionId, mpsc::Receiver<SocketCommand>) {
        let (outbox, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let id = r.register(NewSession {
            user: user.into(),
            instance: instance.into(),
            platform: Platform::Web,
            ticket: format!("t-{instance}"),
            expire_at: 9,
            outbox,
        });
        (id, rx)
    }

    #[test]
    fn register_remove_and_counts() {
        let r = Registry::new();
        let (a, _ra) = login(&r, "alice", "i1");
        let (b, _rb) = login(&r, "alice", "i2");
        let (_c, _rc) = login(&r, "bob", "i1");
        assert_ne!(a, b);
        assert_eq!(r.online_count(), 3);
        let list = r.instances("alice");
        assert_eq!(
            list.iter().map(|i| i.instance.as_str()).collect::<Vec<_>>(),
            ["i1", "i2"],
            "earliest first"
        );
        assert_eq!(list[0].ticket, "t-i1");
        assert!(r.is_online("alice", "i2"));
        assert_eq!(r.remove("alice", a).map(|i| i.instance), Some("i1".into()));
        assert_eq!(r.remove("alice", a), None, "removing twice is a no-op");
        assert_eq!(r.remove("nobody", a), None);
        assert!(!r.is_online("alice", "i1"));
        assert_eq!(r.online_count(), 2);
        r.remove("alice", b).unwrap();
        assert!(r.instances("alice").is_empty());
        assert_eq!(r.online_count(), 1);
    }

    #[test]
    fn kick_notifies_only_that_socket() {
        let r = Registry::new();
        let (a, mut ra) = login(&r, "alice", "i1");
        let (_b, mut rb) = login(&r, "alice", "i2");
        assert!(r.kick("alice", "i1", KickReason::MultipleAccount));
        assert_eq!(
            ra.try_recv().unwrap(),
            SocketCommand::Kick {
                session: a,
                reason: KickReason::MultipleAccount
            }
        );
        assert!(rb.try_recv().is_err(), "the other instance is untouched");
        assert!(!r.is_online("alice", "i1"));
        assert!(r.is_online("alice", "i2"));
        assert!(
            !r.kick("alice", "i1", KickReason::MultipleAccount),
            "already gone"
        );
        assert!(!r.kick("carol", "x", KickReason::RestApi));
        assert_eq!(r.online_count(), 1);
    }

    #[test]
    fn kick_user_kicks_every_instance() {
        let r = Registry::new();
        let (a, mut ra) = login(&r, "alice", "i1");
        let (b, mut rb) = login(&r, "alice", "i2");
        let (_c, mut rc) = login(&r, "bob", "i1");
        assert_eq!(r.kick_user("alice", KickReason::RestApi), 2);
        for (rx, s) in [(&mut ra, a), (&mut rb, b)] {
            assert_eq!(
                rx.try_recv().unwrap(),
                SocketCommand::Kick {
                    session: s,
                    reason: KickReason::RestApi
                }
            );
        }
        assert!(rc.try_recv().is_err());
        assert_eq!(r.online_count(), 1);
        assert_eq!(r.kick_user("alice", KickReason::RestApi), 0);
    }

    #[test]
    fn same_instance_on_a_new_socket_supersedes_the_old_one() {
        let r = Registry::new();
        let (a, mut ra) = login(&r, "alice", "i1");
        let (b, _rb) = login(&r, "alice", "i1");
        assert_eq!(
            ra.try_recv().unwrap(),
            SocketCommand::Superseded { session: a }
        );
        let list = r.instances("alice");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].session, b);
        assert_eq!(r.online_count(), 1);
        assert_eq!(
            r.remove("alice", a),
            None,
            "the old socket's close removes nothing"
        );
        assert!(r.is_online("alice", "i1"));
    }

    #[test]
    fn with_user_drops_empty_entries() {
        let r = Registry::new();
        let n = r.with_user("ghost", |s| s.len());
        assert_eq!(n, 0);
        assert!(r.shard("ghost").get("ghost").is_none());
    }
}
