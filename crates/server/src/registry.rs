//! Who is online: every logged-in instance, per user, with a channel to its socket task —
//! and the login policy applied to them.
//!
//! All of one user's instances live in one [`UserSessions`] guarded by one (sharded) mutex,
//! so a login's decisions (instance limits, "kick the earliest", the multi-platform policy)
//! and the kicks they cause are atomic: two concurrent logins of the same user can never both
//! see room for themselves, nor kick each other. The lock is a `std` mutex, held only for
//! in-memory work and non-blocking `try_send`s, never across an await.
//!
//! An instance whose socket closed stays in its slot ("away") for the resume grace period,
//! so a reconnect resumes without kicking anyone. A kicked instance leaves a tombstone, so
//! if it comes back with its ticket it learns it was kicked instead of taking the slot back.

use std::collections::hash_map::{HashMap, RandomState};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tim_proto::{KickReason, Platform};

use crate::clock::unix_ms;
use crate::ended::{End, Ended, EndedSession};
use crate::policy::LoginSettings;
use crate::session::{
    InstanceInfo, KickRecord, Local, NewSession, Outbox, ResumeRefused, SessionId, SocketCommand,
};
use crate::ticket::{TicketClaims, TICKET_LIFETIME_SECS};

/// Shards of the user map: enough that logins of different users rarely share a lock on a
/// small machine, few enough to cost nothing when idle.
const SHARDS: usize = 64;

/// Tombstones remembered per user (the most recent kicks). A kicked instance only needs
/// its tombstone until its ticket expires; this bounds memory under kick storms.
const MAX_TOMBSTONES: usize = 32;

struct Tombstone {
    instance: String,
    platform: Platform,
    since_ms: u64,
    reason: KickReason,
    /// When it was kicked, unix ms.
    at_ms: u64,
    /// Unix seconds after which no ticket of that session can still be valid.
    until: u64,
}

/// What [`Registry::sizes`] counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySizes {
    /// Users with any entry (a slot, a tombstone or a remembered end).
    pub users: usize,
    /// Slots whose socket is gone, held for a resume.
    pub away: usize,
    pub tombstones: usize,
    /// Ended sessions remembered one by one.
    pub ended: usize,
}

/// All online instances of one user, in login order (earliest first), plus the tombstones
/// of recently kicked ones.
#[derive(Default)]
pub struct UserSessions {
    slots: Vec<Local>,
    tombstones: Vec<Tombstone>,
    /// Sessions that ended otherwise (logged out, replaced), and what overflowed the
    /// tombstones: their tickets are dead (`ended.rs`).
    ended: Ended,
    /// Ends not yet handed to the registry's journal (drained after each change).
    journal: Vec<EndedSession>,
}

impl UserSessions {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstanceInfo> {
        self.slots.iter().map(|s| &s.info)
    }

    /// Instances on `platform`, earliest first.
    pub fn on_platform(&self, platform: Platform) -> impl Iterator<Item = &InstanceInfo> {
        self.iter().filter(move |i| i.platform == platform)
    }

    fn position(&self, pred: impl Fn(&InstanceInfo) -> bool) -> Option<usize> {
        self.slots.iter().position(|s| pred(&s.info))
    }

    /// Removes the slot at `i`, tells its socket and leaves a tombstone.
    fn kick_at(&mut self, i: usize, reason: KickReason) -> InstanceInfo {
        self.kick_at_reported(i, reason, false)
    }

    /// [`UserSessions::kick_at`], telling the socket whether the kick's State.StateChange
    /// event is stored already (`reported`: the socket stores none).
    fn kick_at_reported(&mut self, i: usize, reason: KickReason, reported: bool) -> InstanceInfo {
        let slot = self.remove_kicked(i, reason);
        slot.notify(SocketCommand::Kick {
            session: slot.info.session,
            reason,
            reported,
        });
        slot.info
    }

    /// Removes the slot at `i` as kicked (tombstone, journal) without telling its socket:
    /// the caller does ([`Local::notify`]).
    fn remove_kicked(&mut self, i: usize, reason: KickReason) -> Local {
        let slot = self.slots.remove(i);
        if self.tombstones.len() == MAX_TOMBSTONES {
            let gone = self.tombstones.remove(0);
            self.ended.forget_up_to(gone.since_ms, gone.until);
        }
        self.journal.push(EndedSession {
            app: slot.info.app,
            user: slot.info.user.clone(),
            instance: slot.info.instance.clone(),
            since_ms: slot.info.since_ms,
            end: End::Kicked(reason),
            until: unix_ms() / 1000 + TICKET_LIFETIME_SECS,
        });
        self.tombstones.push(Tombstone {
            instance: slot.info.instance.clone(),
            platform: slot.info.platform,
            since_ms: slot.info.since_ms,
            reason,
            at_ms: unix_ms(),
            until: unix_ms() / 1000 + TICKET_LIFETIME_SECS,
        });
        slot
    }

    /// Records that `info`'s session ended without a kick: its tickets are dead.
    fn end(&mut self, info: &InstanceInfo, end: End) {
        let until = unix_ms() / 1000 + TICKET_LIFETIME_SECS;
        self.ended.record(&info.instance, info.since_ms, end, until);
        self.journal.push(EndedSession {
            app: info.app,
            user: info.user.clone(),
            instance: info.instance.clone(),
            since_ms: info.since_ms,
            end,
            until,
        });
    }

    /// Nothing left to remember: the entry can go.
    fn is_forgettable(&self) -> bool {
        self.slots.is_empty() && self.tombstones.is_empty() && self.ended.is_empty()
    }

    /// Removes the instance and tells its socket why; returns it.
    pub fn kick(&mut self, instance: &str, reason: KickReason) -> Option<InstanceInfo> {
        let i = self.position(|info| info.instance == instance)?;
        Some(self.kick_at(i, reason))
    }

    /// Applies the login settings for a newcomer on `platform`: kicks whoever must go.
    fn evict_for(&mut self, settings: &LoginSettings, platform: Platform) -> Vec<InstanceInfo> {
        let platforms: Vec<Platform> = self.iter().map(|i| i.platform).collect();
        let mut evictions = settings.evictions(&platforms, platform);
        // Remove from the back so earlier indices stay valid.
        evictions.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
        let mut kicked: Vec<InstanceInfo> = evictions
            .into_iter()
            .map(|(i, reason)| self.kick_at(i, reason))
            .collect();
        kicked.reverse();
        kicked
    }

    /// Inserts keeping the slots ordered by `since_ms`.
    fn insert_ordered(&mut self, slot: Local) {
        let at = self
            .slots
            .partition_point(|s| s.info.since_ms <= slot.info.since_ms);
        self.slots.insert(at, slot);
    }
}

/// The in-memory session registry. One per process (shared through `AppState`).
pub struct Registry {
    shards: Box<[Mutex<HashMap<String, UserSessions>>]>,
    hasher: RandomState,
    last_since: AtomicU64,
    online: AtomicUsize,
    /// Where ended sessions are made durable (the store), if anywhere.
    journal: Option<Journal>,
}

/// Receives every batch of ended sessions, outside the user's lock; must not block.
pub type Journal = Box<dyn Fn(Vec<EndedSession>) + Send + Sync>;

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
            last_since: AtomicU64::new(0),
            online: AtomicUsize::new(0),
            journal: None,
        }
    }

    /// Hands every ended session to `journal` (the store), so tickets stay dead across a
    /// restart.
    pub fn with_journal(self, journal: Journal) -> Registry {
        Registry {
            journal: Some(journal),
            ..self
        }
    }

    /// Remembers sessions that ended before this process started (from the store), so their
    /// tickets stay dead. Entries no ticket can match any more (`until <= now_secs`) are
    /// skipped.
    pub fn restore_ended(&self, entries: impl IntoIterator<Item = EndedSession>, now_secs: u64) {
        for e in entries.into_iter().filter(|e| e.until > now_secs) {
            self.with_user(&e.user, |s| {
                s.ended.record(&e.instance, e.since_ms, e.end, e.until)
            });
        }
    }

    fn write_journal(&self, entries: Vec<EndedSession>) {
        if let (Some(journal), false) = (&self.journal, entries.is_empty()) {
            journal(entries);
        }
    }

    fn shard_index(&self, user: &str) -> usize {
        (self.hasher.hash_one(user) as usize) % SHARDS
    }

    fn shard(&self, user: &str) -> MutexGuard<'_, HashMap<String, UserSessions>> {
        lock(&self.shards[self.shard_index(user)])
    }

    /// Runs `f` on `user`'s sessions under the user's lock, creating the (empty) entry if
    /// needed and dropping it again if `f` leaves nothing in it. Everything `f` does is
    /// atomic for that user.
    pub fn with_user<R>(&self, user: &str, f: impl FnOnce(&mut UserSessions) -> R) -> R {
        let mut shard = self.shard(user);
        if !shard.contains_key(user) {
            shard.insert(user.to_owned(), UserSessions::default());
        }
        let sessions = shard.get_mut(user).expect("entry just ensured");
        let before = sessions.len();
        let result = f(sessions);
        let after = sessions.len();
        let ended = std::mem::take(&mut sessions.journal);
        if sessions.is_forgettable() {
            shard.remove(user);
        }
        drop(shard);
        self.adjust_online(before, after);
        self.write_journal(ended);
        result
    }

    /// Like [`Registry::with_user`] for an existing entry only (no allocation for unknown
    /// users); `None` if the user has no entry.
    fn with_existing<R>(&self, user: &str, f: impl FnOnce(&mut UserSessions) -> R) -> Option<R> {
        if !self.shard(user).contains_key(user) {
            return None;
        }
        Some(self.with_user(user, f))
    }

    fn adjust_online(&self, before: usize, after: usize) {
        if after > before {
            self.online.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.online.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Login times, unix ms, strictly increasing across the registry: the login order even
    /// within one millisecond, and a re-login of an instance never reuses its old time.
    fn next_since(&self, now_ms: u64) -> u64 {
        let prev = self
            .last_since
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now_ms.max(last + 1))
            })
            .expect("the closure always returns Some");
        now_ms.max(prev + 1)
    }

    /// Records a login under the login settings, atomically: the same instance on another
    /// socket is superseded (no kick: it is the same tab or device), then whoever the
    /// policy and limits evict is kicked, then the newcomer takes its slot. Returns the new
    /// instance and the kicked ones.
    pub fn login(
        &self,
        new: NewSession,
        settings: &LoginSettings,
    ) -> (InstanceInfo, Vec<InstanceInfo>) {
        self.login_unless(new, settings, || false)
            .expect("never revoked")
    }

    /// [`Registry::login`], unless `revoked()` — asked under the user's lock, before anyone
    /// is evicted — says the UserSig was revoked meanwhile (a REST kick or delete landing
    /// between the login's checks and now). A kick updates the revocations before it takes
    /// this lock, so either the login sees it here, or the kick finds the new session.
    pub fn login_unless(
        &self,
        new: NewSession,
        settings: &LoginSettings,
        revoked: impl FnOnce() -> bool,
    ) -> Option<(InstanceInfo, Vec<InstanceInfo>)> {
        let session = SessionId::next();
        let now_ms = unix_ms();
        self.with_user(&new.user.clone(), |sessions| {
            if revoked() {
                return None;
            }
            if let Some(i) = sessions.position(|i| i.instance == new.instance) {
                let old = sessions.slots.remove(i);
                old.notify(SocketCommand::Superseded {
                    session: old.info.session,
                });
                sessions.end(&old.info, End::Replaced);
            }
            let kicked = sessions.evict_for(settings, new.platform);
            let since_ms = self.next_since(now_ms);
            let info = new.info(session, since_ms, String::new());
            sessions.insert_ordered(Local::attached(info.clone(), new.outbox));
            Some((info, kicked))
        })
    }

    /// Resumes the session a (verified) ticket names on a new socket. Never kicks anyone:
    /// a session that was kicked while away — or that no longer fits beside the instances
    /// online now — is refused instead.
    pub fn resume(
        &self,
        claims: &TicketClaims,
        outbox: Outbox,
        settings: &LoginSettings,
    ) -> Result<InstanceInfo, ResumeRefused> {
        self.resume_unless(claims, outbox, settings, || false)
    }

    /// [`Registry::resume`], refused as a REST kick if `revoked()` (asked under the user's
    /// lock, as in [`Registry::login_unless`]).
    pub fn resume_unless(
        &self,
        claims: &TicketClaims,
        outbox: Outbox,
        settings: &LoginSettings,
        revoked: impl FnOnce() -> bool,
    ) -> Result<InstanceInfo, ResumeRefused> {
        let session = SessionId::next();
        self.with_user(&claims.user, |sessions| {
            if revoked() {
                return Err(ResumeRefused::Kicked(KickReason::RestApi));
            }
            if let Some(t) = sessions
                .tombstones
                .iter()
                .find(|t| t.instance == claims.instance && t.since_ms == claims.since_ms)
            {
                return Err(ResumeRefused::Kicked(t.reason));
            }
            // Tickets die with their session: a later session of the same instance was
            // kicked, or this one (or a later one) ended otherwise.
            if sessions
                .tombstones
                .iter()
                .any(|t| t.instance == claims.instance && t.since_ms > claims.since_ms)
            {
                return Err(ResumeRefused::Replaced);
            }
            if let Some(refused) = sessions.ended.refuses(&claims.instance, claims.since_ms) {
                return Err(refused);
            }
            // ... and with their lifetime, whatever the UserSig's.
            if claims.valid_until <= unix_ms() / 1000 {
                return Err(ResumeRefused::Ended);
            }
            if let Some(i) = sessions.position(|i| i.instance == claims.instance) {
                let slot = &mut sessions.slots[i];
                if slot.info.since_ms != claims.since_ms {
                    return Err(ResumeRefused::Replaced);
                }
                slot.notify(SocketCommand::Superseded {
                    session: slot.info.session,
                });
                slot.reattach(session, outbox);
                return Ok(slot.info.clone());
            }
            // Not in the registry (grace period over, or the server restarted): an end that
            // overflowed the records may have been its own.
            if sessions.ended.below_watermark(claims.since_ms) {
                return Err(ResumeRefused::Ended);
            }
            // It comes back only if it fits without evicting anyone; otherwise the instances
            // online now keep their slots and it learns it was (or would have been) kicked.
            let platforms: Vec<Platform> = sessions.iter().map(|i| i.platform).collect();
            let evictions = settings.evictions(&platforms, claims.platform);
            if let Some(&(_, reason)) = evictions
                .iter()
                .find(|(_, r)| *r == KickReason::MultipleDevice)
                .or(evictions.first())
            {
                return Err(ResumeRefused::Kicked(reason));
            }
            let info = InstanceInfo::resumed(claims, session, String::new());
            sessions.insert_ordered(Local::attached(info.clone(), outbox));
            Ok(info)
        })
    }

    /// The session's socket closed without a logout: keep the slot until `until`, for a
    /// resume. Returns whether it was still registered.
    pub fn detach(&self, user: &str, session: SessionId, until: Instant) -> bool {
        self.with_existing(user, |sessions| {
            let Some(i) = sessions.position(|i| i.session == session) else {
                return false;
            };
            let slot = &mut sessions.slots[i];
            slot.detach(until);
            true
        })
        .unwrap_or(false)
    }

    /// The session runs on a renewed UserSig. Returns it, if it is still registered.
    pub fn renew(
        &self,
        user: &str,
        session: SessionId,
        expire_at: u64,
        sig_time: u64,
    ) -> Option<InstanceInfo> {
        self.with_existing(user, |sessions| {
            let i = sessions.position(|i| i.session == session)?;
            let info = &mut sessions.slots[i].info;
            info.expire_at = expire_at;
            info.sig_time = sig_time;
            Some(info.clone())
        })
        .flatten()
    }

    /// Removes one session (logout), and with it the life of its tickets. Returns it if it
    /// was still registered (it is not once kicked or superseded).
    pub fn remove(&self, user: &str, session: SessionId) -> Option<InstanceInfo> {
        self.with_existing(user, |sessions| {
            let i = sessions.position(|i| i.session == session)?;
            let info = sessions.slots.remove(i).info;
            sessions.end(&info, End::LoggedOut);
            Some(info)
        })
        .flatten()
    }

    /// Kicks one instance: removes it and makes its socket send `kicked{reason}` and close
    /// with `close::KICKED`. Returns whether it was online.
    pub fn kick(&self, user: &str, instance: &str, reason: KickReason) -> bool {
        self.with_existing(user, |sessions| sessions.kick(instance, reason).is_some())
            .unwrap_or(false)
    }

    /// Kicks one session (one attachment): unlike [`Registry::kick`], never a newer login
    /// of the same instance. Returns whether it was still registered.
    pub fn kick_session(&self, user: &str, session: SessionId, reason: KickReason) -> bool {
        self.with_existing(user, |sessions| {
            match sessions.position(|i| i.session == session) {
                Some(i) => {
                    sessions.kick_at(i, reason);
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false)
    }

    /// Kicks every instance of `user` (REST `kick`). Returns how many were online.
    pub fn kick_user(&self, user: &str, reason: KickReason) -> usize {
        self.kick_user_reported(user, reason, &[])
    }

    /// [`Registry::kick_user`], where the sessions in `reported` had their State.StateChange
    /// event stored by the kick's decision already (their sockets store none; any other,
    /// e.g. a login that came in since, stores its own). Returns how many were online.
    pub fn kick_user_reported(
        &self,
        user: &str,
        reason: KickReason,
        reported: &[SessionId],
    ) -> usize {
        self.with_existing(user, |sessions| {
            let n = sessions.len();
            while let Some(slot) = sessions.slots.first() {
                let done = reported.contains(&slot.info.session);
                sessions.kick_at_reported(0, reason, done);
            }
            n
        })
        .unwrap_or(0)
    }

    /// Drops away slots whose grace period is over (their tab or device is gone for good)
    /// and sessions whose UserSig expired while away (they are kicked with
    /// `userSigExpired`, so a late resume learns it), and tombstones no ticket can match
    /// any more. `timd` calls this every couple of seconds.
    pub fn sweep(&self, now: Instant, now_secs: u64) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let mut removed = 0;
            let mut ended = Vec::new();
            shard.retain(|_, sessions| {
                let before = sessions.len();
                sessions
                    .slots
                    .retain(|s| s.away_until().is_none_or(|until| until > now));
                while let Some(i) = sessions.position(|i| !i.attached && i.expire_at <= now_secs) {
                    sessions.kick_at(i, KickReason::UserSigExpired);
                }
                sessions.tombstones.retain(|t| t.until > now_secs);
                sessions.ended.sweep(now_secs);
                ended.append(&mut sessions.journal);
                removed += before - sessions.len();
                !sessions.is_forgettable()
            });
            drop(shard);
            self.adjust_online(removed, 0);
            self.write_journal(ended);
            dropped += removed;
        }
        dropped
    }

    /// Kicks every instance the (new) `settings` no longer allow, earliest first, with the
    /// reason a login would have given (`LoginSettings::over_limits`): an `ApplyNow` change.
    /// Returns how many were kicked.
    pub fn enforce(&self, settings: &LoginSettings) -> usize {
        let kicked = self.enforce_quietly(settings);
        for (slot, reason) in &kicked {
            slot.notify(SocketCommand::Kick {
                session: slot.info.session,
                reason: *reason,
                reported: false,
            });
        }
        kicked.len()
    }

    /// [`Registry::enforce`] without telling the kicked sockets yet: returns the kicked
    /// slots and why, for the caller to store their State.StateChange events first and then
    /// tell them ([`Local::notify`]). Their slots, tombstones and ends are done.
    pub fn enforce_quietly(&self, settings: &LoginSettings) -> Vec<(Local, KickReason)> {
        let mut kicked = Vec::new();
        for shard in self.shards.iter() {
            let users: Vec<String> = lock(shard).keys().cloned().collect();
            for user in users {
                self.with_existing(&user, |sessions| {
                    let platforms: Vec<Platform> = sessions.iter().map(|i| i.platform).collect();
                    let gone = settings.over_limits(&platforms);
                    let mut mine = Vec::with_capacity(gone.len());
                    for &(i, reason) in gone.iter().rev() {
                        mine.push((sessions.remove_kicked(i, reason), reason));
                    }
                    mine.reverse();
                    kicked.append(&mut mine);
                });
            }
        }
        kicked
    }

    /// Snapshot of `user`'s instances (attached or away), earliest login first.
    pub fn instances(&self, user: &str) -> Vec<InstanceInfo> {
        self.shard(user)
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `user`'s recent kicks (its tombstones), oldest first: the demo page's kick feed.
    pub fn recent_kicks(&self, user: &str) -> Vec<KickRecord> {
        self.shard(user)
            .get(user)
            .map(|s| {
                s.tombstones
                    .iter()
                    .map(|t| KickRecord {
                        instance: t.instance.clone(),
                        platform: t.platform,
                        since_ms: t.since_ms,
                        reason: t.reason,
                        at_ms: t.at_ms,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_online(&self, user: &str, instance: &str) -> bool {
        self.shard(user)
            .get(user)
            .is_some_and(|s| s.iter().any(|i| i.instance == instance))
    }

    /// Instances holding a slot (attached or away), per platform.
    pub fn per_platform(&self) -> Vec<(Platform, usize)> {
        let mut counts = [0usize; Platform::ALL.len()];
        for shard in self.shards.iter() {
            for sessions in lock(shard).values() {
                for info in sessions.iter() {
                    if let Some(i) = Platform::ALL.iter().position(|p| *p == info.platform) {
                        counts[i] += 1;
                    }
                }
            }
        }
        Platform::ALL.iter().copied().zip(counts).collect()
    }

    /// Instances holding a slot per platform, (attached, away) each, in `Platform::ALL`'s
    /// order (the console's online summary).
    pub fn platform_counts(&self) -> crate::backend::PlatformCounts {
        let mut counts = crate::backend::PlatformCounts::default();
        for shard in self.shards.iter() {
            for sessions in lock(shard).values() {
                for slot in &sessions.slots {
                    crate::backend::count_in(&mut counts, slot.info.platform, slot.is_attached());
                }
            }
        }
        counts
    }

    /// How much state the registry holds (`/metrics`, the soak bench): one walk over every
    /// shard, each locked in turn.
    pub fn sizes(&self) -> RegistrySizes {
        let mut sizes = RegistrySizes::default();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            sizes.users += shard.len();
            for sessions in shard.values() {
                sizes.away += sessions.slots.iter().filter(|s| !s.is_attached()).count();
                sizes.tombstones += sessions.tombstones.len();
                sizes.ended += sessions.ended.len();
            }
        }
        sizes
    }

    /// Instances holding a slot (attached or away), across all users.
    pub fn online_count(&self) -> usize {
        self.online.load(Ordering::Relaxed)
    }
}

/// A panic while holding the lock leaves the map consistent (every mutation is a single
/// Vec/HashMap operation), so a poisoned lock is safe to keep using.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::LoginPolicy;

    const WEB2: LoginSettings = LoginSettings {
        web_instances: 2,
        platform_instances: 1,
        policy: LoginPolicy::Single,
    };

    fn new(
        user: &str,
        instance: &str,
        platform: Platform,
    ) -> (NewSession, crate::session::Commands) {
        let (outbox, rx) = crate::session::commands();
        let s = NewSession {
            app: 1,
            user: user.into(),
            instance: instance.into(),
            platform,
            expire_at: u64::MAX,
            sig_time: 1,
            outbox,
            client: None,
        };
        (s, rx)
    }

    fn login(
        r: &Registry,
        s: &LoginSettings,
        user: &str,
        instance: &str,
        platform: Platform,
    ) -> (InstanceInfo, Vec<InstanceInfo>, crate::session::Commands) {
        let (n, rx) = new(user, instance, platform);
        let (info, kicked) = r.login(n, s);
        (info, kicked, rx)
    }

    fn claims_of(info: &InstanceInfo) -> TicketClaims {
        info.ticket_claims(u64::MAX)
    }

    fn names(list: &[InstanceInfo]) -> Vec<&str> {
        list.iter().map(|i| i.instance.as_str()).collect()
    }

    /// The seed's scenario: Online Web Instances = 2; a1, a2 in; a3 kicks a1 only.
    #[test]
    fn third_web_login_kicks_the_earliest_only() {
        let r = Registry::new();
        let (a1, _, mut r1) = login(&r, &WEB2, "alice", "a1", Platform::Web);
        let (_, k, mut r2) = login(&r, &WEB2, "alice", "a2", Platform::Web);
        assert!(k.is_empty());
        let (_, k, _r3) = login(&r, &WEB2, "alice", "a3", Platform::Web);
        assert_eq!(names(&k), ["a1"]);
        assert_eq!(
            r1.try_recv().unwrap(),
            SocketCommand::Kick {
                session: a1.session,
                reason: KickReason::MultipleAccount,
                reported: false
            }
        );
        assert!(r2.try_recv().is_err(), "a2 untouched");
        assert_eq!(names(&r.instances("alice")), ["a2", "a3"]);
        assert_eq!(r.online_count(), 2);
    }

    #[test]
    fn another_platform_under_single_kicks_with_multiple_device() {
        let r = Registry::new();
        let (web, _, mut rw) = login(&r, &WEB2, "alice", "tab", Platform::Web);
        let (_, k, _) = login(&r, &WEB2, "alice", "phone", Platform::Android);
        assert_eq!(names(&k), ["tab"]);
        assert_eq!(
            rw.try_recv().unwrap(),
            SocketCommand::Kick {
                session: web.session,
                reason: KickReason::MultipleDevice,
                reported: false
            }
        );
    }

    #[test]
    fn same_instance_on_a_new_socket_supersedes_without_kicking() {
        let r = Registry::new();
        let s = LoginSettings::default();
        let (a, _, mut ra) = login(&r, &s, "alice", "i1", Platform::Web);
        let (b, k, _rb) = login(&r, &s, "alice", "i1", Platform::Web);
        assert!(k.is_empty());
        assert_eq!(
            ra.try_recv().unwrap(),
            SocketCommand::Superseded { session: a.session }
        );
        assert_eq!(r.instances("alice"), vec![b.clone()]);
        assert_eq!(
            r.remove("alice", a.session),
            None,
            "the old socket removes nothing"
        );
        assert!(r.is_online("alice", "i1"));
    }

    #[test]
    fn logins_are_ordered_even_within_one_millisecond() {
        let r = Registry::new();
        let s = LoginSettings {
            web_instances: 10,
            ..LoginSettings::default()
        };
        let infos: Vec<_> = (0..10)
            .map(|i| login(&r, &s, "alice", &format!("i{i}"), Platform::Web).0)
            .collect();
        for w in infos.windows(2) {
            assert!(w[0].since_ms < w[1].since_ms);
        }
    }

    #[test]
    fn resume_reattaches_its_own_slot_and_kicks_no_one() {
        let r = Registry::new();
        let (a1, _, _) = login(&r, &WEB2, "alice", "a1", Platform::Web);
        let (_, _, mut r2) = login(&r, &WEB2, "alice", "a2", Platform::Web);
        assert!(r.detach(
            "alice",
            a1.session,
            Instant::now() + Duration::from_secs(60)
        ));
        assert!(!r.instances("alice")[0].attached);
        assert_eq!(r.online_count(), 2, "an away instance keeps its slot");
        let (outbox, _rx) = crate::session::commands();
        let back = r.resume(&claims_of(&a1), outbox, &WEB2).unwrap();
        assert_eq!(back.since_ms, a1.since_ms);
        assert_ne!(back.session, a1.session, "a new attachment");
        assert!(back.attached);
        assert_eq!(names(&r.instances("alice")), ["a1", "a2"]);
        assert!(r2.try_recv().is_err());
        assert_eq!(r.online_count(), 2, "counted once");
    }

    #[test]
    fn resume_while_the_old_socket_lingers_supersedes_it() {
        let r = Registry::new();
        let s = LoginSettings::default();
        let (a, _, mut ra) = login(&r, &s, "alice", "a", Platform::Web);
        let (outbox, _rx) = crate::session::commands();
        r.resume(&claims_of(&a), outbox, &s).unwrap();
        assert_eq!(
            ra.try_recv().unwrap(),
            SocketCommand::Superseded { session: a.session }
        );
        assert_eq!(r.online_count(), 1);
    }

    #[test]
    fn kicked_while_away_is_told_and_does_not_take_the_slot_back() {
        let r = Registry::new();
        let s = LoginSettings::default(); // one Web instance
        let (a, _, _) = login(&r, &s, "alice", "a", Platform::Web);
        r.detach("alice", a.session, Instant::now() + Duration::from_secs(60));
        let (_, k, mut rb) = login(&r, &s, "alice", "b", Platform::Web);
        assert_eq!(
            names(&k),
            ["a"],
            "the away instance is the earliest: it goes"
        );
        let (outbox, _rx) = crate::session::commands();
        assert_eq!(
            r.resume(&claims_of(&a), outbox, &s),
            Err(ResumeRefused::Kicked(KickReason::MultipleAccount))
        );
        assert_eq!(names(&r.instances("alice")), ["b"]);
        assert!(rb.try_recv().is_err(), "b untouched");
    }

    #[test]
    fn resume_after_the_registry_forgot_fits_or_is_refused() {
        // As after a restart: a fresh registry, the tickets still valid.
        let s = LoginSettings::default();
        let old = Registry::new();
        let (a, _, _) = login(&old, &s, "alice", "a", Platform::Web);
        let (b, _, _) = login(&old, &s, "alice", "b", Platform::Web); // kicked a
        let r = Registry::new();
        // b comes back first: room, resumed with its original login time.
        let (o1, _r1) = crate::session::commands();
        assert_eq!(
            r.resume(&claims_of(&b), o1, &s).unwrap().since_ms,
            b.since_ms
        );
        // a (kicked before the restart, tombstone lost) would need b's slot: refused.
        let (o2, _r2) = crate::session::commands();
        assert_eq!(
            r.resume(&claims_of(&a), o2, &s),
            Err(ResumeRefused::Kicked(KickReason::MultipleAccount))
        );
        assert_eq!(names(&r.instances("alice")), ["b"]);
        // Policy conflicts are reported as multipleDevice.
        let (mut phone, _) = new("alice", "p", Platform::Android);
        phone.platform = Platform::Android;
        let single = LoginSettings {
            policy: LoginPolicy::Single,
            ..s
        };
        let (o3, _r3) = crate::session::commands();
        let claims = TicketClaims {
            instance: "p".into(),
            platform: Platform::Android,
            ..claims_of(&a)
        };
        assert_eq!(
            r.resume(&claims, o3, &single),
            Err(ResumeRefused::Kicked(KickReason::MultipleDevice))
        );
    }

    #[test]
    fn a_stale_ticket_of_a_relogged_instance_is_replaced() {
        let r = Registry::new();
        let s = LoginSettings::default();
        let (first, _, _) = login(&r, &s, "alice", "a", Platform::Web);
        let (_second, _, _) = login(&r, &s, "alice", "a", Platform::Web);
        let (o, _rx) = crate::session::commands();
        assert_eq!(
            r.resume(&claims_of(&first), o, &s),
            Err(ResumeRefused::Replaced)
        );
    }

    #[test]
    fn sweep_drops_expired_away_slots_and_expires_usersigs() {
        let r = Registry::new();
        let s = LoginSettings {
            web_instances: 3,
            ..LoginSettings::default()
        };
        let (a, _, _) = login(&r, &s, "alice", "a", Platform::Web);
        let (b, _, _) = login(&r, &s, "alice", "b", Platform::Web);
        let (c, _, _) = login(&r, &s, "alice", "c", Platform::Web);
        let now = Instant::now();
        r.detach("alice", a.session, now);
        r.detach("alice", b.session, now + Duration::from_secs(60));
        r.with_user("alice", |u| {
            let i = u.position(|i| i.instance == "b").unwrap();
            u.slots[i].info.expire_at = 100;
        });
        assert_eq!(r.sweep(now, 100), 2);
        assert_eq!(names(&r.instances("alice")), ["c"]);
        assert_eq!(r.online_count(), 1);
        // a's grace ran out: it may come back if it fits (it does not: limit 3, but it was
        // never kicked, so a late resume is allowed when there is room).
        let (o, _rx) = crate::session::commands();
        assert!(r.resume(&claims_of(&a), o, &s).is_ok());
        // b's UserSig expired while away: a late resume learns it.
        let (o, _rx) = crate::session::commands();
        assert_eq!(
            r.resume(&claims_of(&b), o, &s),
            Err(ResumeRefused::Kicked(KickReason::UserSigExpired))
        );
        let _ = c;
    }

    #[test]
    fn kick_user_kicks_every_instance_and_leaves_tombstones() {
        let r = Registry::new();
        let s = LoginSettings {
            web_instances: 2,
            ..LoginSettings::default()
        };
        let (a, _, mut ra) = login(&r, &s, "alice", "i1", Platform::Web);
        let (b, _, mut rb) = login(&r, &s, "alice", "i2", Platform::Web);
        let (_c, _, mut rc) = login(&r, &s, "bob", "i1", Platform::Web);
        r.detach("alice", b.session, Instant::now() + Duration::from_secs(60));
        assert_eq!(r.kick_user("alice", KickReason::RestApi), 2);
        assert_eq!(
            ra.try_recv().unwrap(),
            SocketCommand::Kick {
                session: a.session,
                reason: KickReason::RestApi,
                reported: false
            }
        );
        assert!(rb.try_recv().is_err(), "detached: nothing to send to");
        assert!(rc.try_recv().is_err());
        assert_eq!(r.online_count(), 1);
        let (o, _rx) = crate::session::commands();
        assert_eq!(
            r.resume(&claims_of(&b), o, &s),
            Err(ResumeRefused::Kicked(KickReason::RestApi))
        );
        assert_eq!(r.kick_user("alice", KickReason::RestApi), 0);
        assert!(!r.kick("carol", "x", KickReason::RestApi));
    }

    #[test]
    fn tombstones_are_bounded_and_expire() {
        let r = Registry::new();
        let s = LoginSettings::default();
        for i in 0..(MAX_TOMBSTONES + 10) {
            login(&r, &s, "alice", &format!("i{i}"), Platform::Web);
        }
        assert_eq!(r.with_user("alice", |u| u.tombstones.len()), MAX_TOMBSTONES);
        r.with_user("alice", |u| u.slots.clear());
        r.sweep(Instant::now(), u64::MAX - 1);
        assert!(
            r.shard("alice").get("alice").is_none(),
            "nothing left for alice"
        );
        assert_eq!(r.online_count(), 0);
    }

    /// Racing logins of one user never leave it over the limit nor kick both.
    #[test]
    fn racing_logins_never_exceed_the_limit() {
        for limit in 1..=3u8 {
            let r = std::sync::Arc::new(Registry::new());
            let s = LoginSettings {
                web_instances: limit,
                ..LoginSettings::default()
            };
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let r = r.clone();
                    std::thread::spawn(move || {
                        let mut kept = Vec::new();
                        for i in 0..200 {
                            let (info, _, rx) =
                                login(&r, &s, "alice", &format!("t{t}-{i}"), Platform::Web);
                            kept.push((info, rx));
                            assert!(r.instances("alice").len() <= usize::from(limit));
                        }
                        kept
                    })
                })
                .collect();
            let mut kicked = 0;
            let mut all = 0;
            let logins: Vec<_> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let present: Vec<String> = r
                .instances("alice")
                .into_iter()
                .map(|i| i.instance)
                .collect();
            {
                for (info, mut rx) in logins {
                    all += 1;
                    match rx.try_recv() {
                        Ok(_) => kicked += 1,
                        Err(e) => assert!(
                            present.contains(&info.instance),
                            "{} neither kicked nor present: {e:?}",
                            info.instance
                        ),
                    }
                }
            }
            assert_eq!(r.instances("alice").len(), usize::from(limit));
            assert_eq!(
                kicked,
                all - usize::from(limit),
                "every other login was kicked exactly once"
            );
        }
    }
}
