//! The sessions this node holds: which socket task each one's kick goes to, and what the
//! node registers again if Redis lost data. Redis decides who holds a slot; this map only delivers.
//!
//! A kick can reach this node (on its channel) before the login script's reply that
//! created the session has been processed; such early notices are kept briefly and applied
//! when the session is inserted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::session::{self, InstanceInfo, Local, Outbox, SessionId, SocketCommand};
use tim_proto::{KickReason, Platform};

/// How long an early notice waits for its session.
const EARLY_NOTICE_TTL: Duration = Duration::from_secs(30);

/// What another node (or a registration again after a data loss) tells this node about one
/// of its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Kicked: send `kicked{reason}` and close.
    Kick(KickReason),
    /// Kicked, and the decision stored the State.StateChange event already (notice kind
    /// `R`: a REST kick or account deletion, `kick_user.lua`).
    KickReported(KickReason),
    /// Its instance is on another socket now (resumed or logged in again elsewhere).
    Superseded,
}

/// One session as a registration again reports it to Redis.
#[derive(Debug, Clone)]
pub struct HeldSession {
    pub info: InstanceInfo,
    pub attached: bool,
}

#[derive(Default)]
pub struct HeldSessions {
    map: Mutex<HashMap<SessionId, Local>>,
    early: Mutex<HashMap<SessionId, (Notice, Instant)>>,
    /// Sessions that ended here (logout) while Redis could not record it: written on each
    /// node round until Redis has it, so their tickets never resume.
    unwritten_ends: Mutex<HashMap<SessionId, InstanceInfo>>,
    /// Logins and resumes whose script went to Redis but whose answer never came (timed out,
    /// connection lost): Redis may have admitted a slot this node never held; also sessions
    /// whose expiry or release Redis could not record. Released on each node round until
    /// Redis answers (or the node fences itself: its old id's slots are dead).
    orphans: Mutex<HashMap<SessionId, (InstanceInfo, Instant)>>,
}

impl HeldSessions {
    /// Records a session Redis just admitted on this node, attached to `outbox`. A notice
    /// that arrived for it first is applied now.
    pub fn insert(&self, info: InstanceInfo, outbox: Outbox) {
        let early = lock(&self.early).remove(&info.session);
        match early {
            Some((notice, _)) => send(&outbox, info.session, notice),
            None => {
                lock(&self.map).insert(info.session, Local::attached(info, outbox));
            }
        }
    }

    /// Applies a kick or supersession decided in Redis: the session leaves this node and its
    /// socket is told. Returns whether the session was here.
    pub fn apply(&self, session: SessionId, notice: Notice) -> bool {
        let held = lock(&self.map).remove(&session);
        match held {
            Some(held) => {
                held.notify(command(session, notice));
                true
            }
            None => {
                let mut early = lock(&self.early);
                let now = Instant::now();
                early.retain(|_, (_, at)| now.duration_since(*at) < EARLY_NOTICE_TTL);
                early.insert(session, (notice, now));
                false
            }
        }
    }

    /// The socket closed: hold the slot until `until`. Returns the session if held.
    pub fn detach(&self, session: SessionId, until: Instant) -> Option<InstanceInfo> {
        let mut map = lock(&self.map);
        let held = map.get_mut(&session)?;
        held.detach(until);
        Some(held.info.clone())
    }

    /// The session ends here (logout, expiry). Returns it if held.
    pub fn remove(&self, session: SessionId) -> Option<InstanceInfo> {
        lock(&self.map).remove(&session).map(|h| h.info)
    }

    /// A session that ended here but whose end Redis has not recorded yet.
    pub fn end_unwritten(&self, info: InstanceInfo) {
        lock(&self.unwritten_ends).insert(info.session, info);
    }

    /// A session Redis may have admitted without this node knowing (its script's answer
    /// never came).
    pub fn orphan(&self, info: InstanceInfo, at: Instant) {
        lock(&self.orphans).insert(info.session, (info, at));
    }

    /// The orphans still to release, with when each was sent.
    pub fn orphans(&self) -> Vec<(InstanceInfo, Instant)> {
        lock(&self.orphans).values().cloned().collect()
    }

    /// `session`'s possible slot is released.
    pub fn orphan_released(&self, session: SessionId) {
        lock(&self.orphans).remove(&session);
    }

    /// The ends still to write to Redis.
    pub fn unwritten_ends(&self) -> Vec<InstanceInfo> {
        lock(&self.unwritten_ends).values().cloned().collect()
    }

    /// `session`'s end is recorded (or no longer needs to be).
    pub fn end_written(&self, session: SessionId) {
        lock(&self.unwritten_ends).remove(&session);
    }

    /// The session runs on a renewed UserSig.
    pub fn renewed(
        &self,
        session: SessionId,
        expire_at: u64,
        sig_time: u64,
    ) -> Option<InstanceInfo> {
        let mut map = lock(&self.map);
        let held = map.get_mut(&session)?;
        held.info.expire_at = expire_at;
        held.info.sig_time = sig_time;
        Some(held.info.clone())
    }

    /// Every held session, grouped by (app, user) (one script per user registers them again).
    pub fn by_user(&self) -> Vec<((u32, String), Vec<HeldSession>)> {
        let mut users: HashMap<(u32, String), Vec<HeldSession>> = HashMap::new();
        for held in lock(&self.map).values() {
            users
                .entry((held.info.app, held.info.user.clone()))
                .or_default()
                .push(HeldSession {
                    info: held.info.clone(),
                    attached: held.is_attached(),
                });
        }
        users.into_iter().collect()
    }

    /// This node fenced itself: every held session is lost (its socket is closed so that
    /// its client resumes), and the slots of lost answers need no release (they name the
    /// old node id, which is dead). Returns how many sessions were held.
    pub fn fence(&self) -> usize {
        let held: Vec<(SessionId, Local)> = lock(&self.map).drain().collect();
        for (session, local) in &held {
            local.notify(SocketCommand::Lost { session: *session });
        }
        lock(&self.orphans).clear();
        lock(&self.early).clear();
        held.len()
    }

    /// The users of `app` with a session held here.
    pub fn users_of(&self, app: u32) -> Vec<String> {
        let mut users: Vec<String> = lock(&self.map)
            .values()
            .filter(|h| h.info.app == app)
            .map(|h| h.info.user.clone())
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Takes out the away sessions whose grace is over (to release) and those whose
    /// UserSig ran out while away (to expire). Early notices whose session never came (it had already left this node) go too.
    pub fn due(&self, now: Instant, now_secs: u64) -> (Vec<InstanceInfo>, Vec<InstanceInfo>) {
        lock(&self.early).retain(|_, (_, at)| now.duration_since(*at) < EARLY_NOTICE_TTL);
        let mut map = lock(&self.map);
        let mut released = Vec::new();
        let mut expired = Vec::new();
        map.retain(|_, held| match held.away_until() {
            Some(_) if held.info.expire_at <= now_secs => {
                expired.push(held.info.clone());
                false
            }
            Some(until) if until <= now => {
                released.push(held.info.clone());
                false
            }
            _ => true,
        });
        (released, expired)
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Held sessions whose socket is gone, waiting for a resume (`/metrics`).
    pub fn away(&self) -> usize {
        lock(&self.map)
            .values()
            .filter(|h| !h.is_attached())
            .count()
    }

    /// Notices waiting for their session (`/metrics`; each lives a few seconds at most).
    pub fn early_notices(&self) -> usize {
        lock(&self.early).len()
    }

    /// Held sessions per platform (attached or away).
    pub fn per_platform(&self) -> Vec<(Platform, usize)> {
        let map = lock(&self.map);
        Platform::ALL
            .iter()
            .map(|&p| (p, map.values().filter(|h| h.info.platform == p).count()))
            .collect()
    }

    /// Held sessions per app and platform, (attached, away) each, in `Platform::ALL`'s
    /// order (the console's online summary).
    pub fn platform_counts(&self) -> HashMap<u32, crate::backend::PlatformCounts> {
        let mut apps: HashMap<u32, crate::backend::PlatformCounts> = HashMap::new();
        for held in lock(&self.map).values() {
            let counts = apps.entry(held.info.app).or_default();
            crate::backend::count_in(counts, held.info.platform, held.is_attached());
        }
        apps
    }

    /// Whether `session` is held here (tests, the demo page).
    pub fn get(&self, session: SessionId) -> Option<InstanceInfo> {
        lock(&self.map).get(&session).map(|h| h.info.clone())
    }
}

fn command(session: SessionId, notice: Notice) -> SocketCommand {
    match notice {
        Notice::Kick(reason) => SocketCommand::Kick {
            session,
            reason,
            reported: false,
        },
        Notice::KickReported(reason) => SocketCommand::Kick {
            session,
            reason,
            reported: true,
        },
        Notice::Superseded => SocketCommand::Superseded { session },
    }
}

fn send(outbox: &Outbox, session: SessionId, notice: Notice) {
    session::send(outbox, command(session, notice));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(session: u64) -> InstanceInfo {
        InstanceInfo {
            session: SessionId(session),
            app: 1,
            node: "n1".into(),
            user: "alice".into(),
            instance: format!("i{session}"),
            platform: Platform::Web,
            since_ms: session,
            expire_at: u64::MAX,
            sig_time: 1,
            attached: true,
        }
    }

    #[test]
    fn a_notice_before_the_insert_is_applied_on_insert() {
        let held = HeldSessions::default();
        assert!(!held.apply(SessionId(7), Notice::Kick(KickReason::MultipleAccount)));
        let (outbox, mut rx) = crate::session::commands();
        held.insert(info(7), outbox);
        assert_eq!(
            rx.try_recv().unwrap(),
            SocketCommand::Kick {
                session: SessionId(7),
                reason: KickReason::MultipleAccount,
                reported: false
            }
        );
        assert!(
            held.is_empty(),
            "a session kicked before it arrived is not held"
        );
    }

    #[test]
    fn apply_tells_an_attached_socket_only() {
        let held = HeldSessions::default();
        let (o1, mut r1) = crate::session::commands();
        let (o2, mut r2) = crate::session::commands();
        held.insert(info(1), o1);
        held.insert(info(2), o2);
        held.detach(SessionId(2), Instant::now());
        assert!(held.apply(SessionId(1), Notice::Superseded));
        assert!(held.apply(SessionId(2), Notice::Kick(KickReason::RestApi)));
        assert_eq!(
            r1.try_recv().unwrap(),
            SocketCommand::Superseded {
                session: SessionId(1)
            }
        );
        assert!(r2.try_recv().is_err(), "away: no socket to tell");
        assert!(held.is_empty());
    }

    #[test]
    fn due_releases_after_the_grace_and_expires_run_out_usersigs() {
        let held = HeldSessions::default();
        let now = Instant::now();
        for s in 1..=3 {
            let (o, _r) = crate::session::commands();
            let mut i = info(s);
            if s == 3 {
                i.expire_at = 100;
            }
            held.insert(i, o);
        }
        held.detach(SessionId(1), now);
        held.detach(SessionId(3), now + Duration::from_secs(60));
        let (released, expired) = held.due(now, 100);
        assert_eq!(
            released.iter().map(|i| i.session.0).collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(expired.iter().map(|i| i.session.0).collect::<Vec<_>>(), [3]);
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn an_early_notice_whose_session_never_comes_is_dropped_by_due() {
        let held = HeldSessions::default();
        assert!(!held.apply(SessionId(9), Notice::Superseded));
        assert_eq!(held.early_notices(), 1);
        held.due(Instant::now(), 100);
        assert_eq!(
            held.early_notices(),
            1,
            "kept while its session may still come"
        );
        held.due(Instant::now() + EARLY_NOTICE_TTL, 100);
        assert_eq!(held.early_notices(), 0);
    }
}
