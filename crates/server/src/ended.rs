//! Ended sessions: what keeps a ticket dead once its session is over.
//!
//! A ticket is a bearer credential signed with the app key, so it verifies for as long as
//! it lives (at most [`TICKET_LIFETIME_SECS`](crate::ticket::TICKET_LIFETIME_SECS)). A
//! session can end before that — logout, a kick, a newer login of the same instance — and
//! its tickets must then stop resuming. The registry remembers, per user, the latest ended
//! session of each instance (sessions of one instance never overlap, so every earlier one
//! of that instance is over too), until no ticket of it can still be valid; over
//! [`MAX_RECORDS`] instances, the oldest are folded into a per-user watermark: a ticket
//! that logged in at or before it and holds no slot is dead too (its holder logs in again
//! with its UserSig, which is always allowed).
//!
//! Every end is also written to the store (`ended_sessions`), so a restarted `timd` — or
//! another node on the same store — refuses the same tickets.

use tim_proto::KickReason;

use crate::session::ResumeRefused;

/// Instances remembered per user before the oldest are folded into the watermark.
pub const MAX_RECORDS: usize = 32;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Kicked(KickReason),
    /// The same instance logged in again (a reload, or another socket): a newer session.
    Replaced,
    /// `logout`, or a new login or resume on the same socket.
    LoggedOut,
}

const REASONS: [KickReason; 4] = [
    KickReason::MultipleAccount,
    KickReason::MultipleDevice,
    KickReason::UserSigExpired,
    KickReason::RestApi,
];

impl End {
    /// The store's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Kicked(reason) => reason.as_str(),
            End::Replaced => "replaced",
            End::LoggedOut => "logout",
        }
    }

    pub fn parse(s: &str) -> Option<End> {
        match s {
            "replaced" => Some(End::Replaced),
            "logout" => Some(End::LoggedOut),
            _ => REASONS
                .into_iter()
                .find(|r| r.as_str() == s)
                .map(End::Kicked),
        }
    }

    /// What a resume with a ticket of this very session is told.
    fn refusal(self) -> ResumeRefused {
        match self {
            End::Kicked(reason) => ResumeRefused::Kicked(reason),
            End::Replaced => ResumeRefused::Replaced,
            End::LoggedOut => ResumeRefused::Ended,
        }
    }
}

/// One ended session, as journaled to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub app: u32,
    pub user: String,
    pub instance: String,
    /// The session's login time, unix ms (tickets carry it).
    pub since_ms: u64,
    pub end: End,
    /// Unix seconds after which no ticket of the session can be valid: forget it then.
    pub until: u64,
}

#[derive(Debug, Clone)]
struct Record {
    instance: String,
    since_ms: u64,
    end: End,
    until: u64,
}

/// One user's ended sessions.
#[derive(Debug, Default)]
pub struct Ended {
    records: Vec<Record>,
    /// Tickets of sessions that logged in at or before this (unix ms) and hold no slot are
    /// dead: raised when a record is dropped for space.
    through_ms: u64,
    /// When the watermark can be forgotten (unix seconds).
    through_until: u64,
}

impl Ended {
    /// Remembers that `instance`'s session of `since_ms` ended (and so every earlier one).
    pub fn record(&mut self, instance: &str, since_ms: u64, end: End, until: u64) {
        if let Some(r) = self.records.iter_mut().find(|r| r.instance == instance) {
            if since_ms >= r.since_ms {
                *r = Record {
                    instance: r.instance.clone(),
                    since_ms,
                    end,
                    until: until.max(r.until),
                };
            }
            return;
        }
        self.records.push(Record {
            instance: instance.to_owned(),
            since_ms,
            end,
            until,
        });
        if self.records.len() > MAX_RECORDS {
            let oldest = (0..self.records.len())
                .min_by_key(|&i| self.records[i].since_ms)
                .expect("not empty");
            let r = self.records.swap_remove(oldest);
            self.forget_up_to(r.since_ms, r.until);
        }
    }

    /// Folds a forgotten end (of a session that logged in at `since_ms`) into the watermark.
    pub fn forget_up_to(&mut self, since_ms: u64, until: u64) {
        self.through_ms = self.through_ms.max(since_ms);
        self.through_until = self.through_until.max(until);
    }

    /// The refusal for a ticket of `instance`'s session of `since_ms`, if that session or a
    /// later one of the same instance is known to have ended.
    pub fn refuses(&self, instance: &str, since_ms: u64) -> Option<ResumeRefused> {
        let r = self.records.iter().find(|r| r.instance == instance)?;
        match since_ms.cmp(&r.since_ms) {
            std::cmp::Ordering::Equal => Some(r.end.refusal()),
            std::cmp::Ordering::Less => Some(ResumeRefused::Replaced),
            std::cmp::Ordering::Greater => None,
        }
    }

    /// Whether a ticket of a session that logged in at `since_ms`, holding no slot, is
    /// below the watermark (dead).
    pub fn below_watermark(&self, since_ms: u64) -> bool {
        since_ms <= self.through_ms
    }

    /// Forgets what no valid ticket can match any more.
    pub fn sweep(&mut self, now_secs: u64) {
        self.records.retain(|r| r.until > now_secs);
        if self.through_until <= now_secs {
            self.through_ms = 0;
            self.through_until = 0;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.through_ms == 0
    }

    /// Ended sessions remembered one by one (the watermark not counted).
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for end in [
            End::Replaced,
            End::LoggedOut,
            End::Kicked(KickReason::MultipleAccount),
            End::Kicked(KickReason::MultipleDevice),
            End::Kicked(KickReason::UserSigExpired),
            End::Kicked(KickReason::RestApi),
        ] {
            assert_eq!(End::parse(end.as_str()), Some(end));
        }
        assert_eq!(End::parse("other"), None);
    }

    #[test]
    fn the_latest_end_of_an_instance_refuses_it_and_every_earlier_session() {
        let mut e = Ended::default();
        e.record("a", 100, End::LoggedOut, 50);
        assert_eq!(e.refuses("a", 100), Some(ResumeRefused::Ended));
        assert_eq!(e.refuses("a", 99), Some(ResumeRefused::Replaced));
        assert_eq!(e.refuses("a", 101), None, "a newer session of a");
        assert_eq!(e.refuses("b", 100), None);
        // An older end arriving late changes nothing.
        e.record("a", 90, End::Kicked(KickReason::RestApi), 60);
        assert_eq!(e.refuses("a", 100), Some(ResumeRefused::Ended));
        e.record("a", 200, End::Kicked(KickReason::MultipleDevice), 60);
        assert_eq!(
            e.refuses("a", 200),
            Some(ResumeRefused::Kicked(KickReason::MultipleDevice))
        );
        assert_eq!(e.refuses("a", 100), Some(ResumeRefused::Replaced));
        e.sweep(59);
        assert!(!e.is_empty());
        e.sweep(60);
        assert!(e.is_empty());
    }

    #[test]
    fn records_are_bounded_and_overflow_into_the_watermark() {
        let mut e = Ended::default();
        for i in 0..(MAX_RECORDS as u64 + 3) {
            e.record(&format!("i{i}"), 1000 + i, End::LoggedOut, 10);
        }
        assert_eq!(e.records.len(), MAX_RECORDS);
        assert!(e.below_watermark(1002), "the three oldest were folded in");
        assert!(!e.below_watermark(1003));
        assert_eq!(
            e.refuses("i0", 1000),
            None,
            "forgotten, but below the watermark"
        );
        e.sweep(10);
        assert!(e.is_empty());
        assert!(!e.below_watermark(1));
    }
}
