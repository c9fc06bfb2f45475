//! The in-memory copy of the REST kick times (`kicks` table): every login and session resume
//! asks "was this UserSig issued at or before the user's last kick?", so the answer must not
//! cost a store round trip.
//!
//! The SQLite table is the truth: [`Kicks`] is filled from it at start and updated only
//! after a kick is durable, so it never claims a kick the file would not remember.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How far ahead of the server's clock a UserSig's `TLS.time` may be (clock skew between
/// the app server that signs and `timd`); beyond it the UserSig is refused (70003). A REST
/// kick at second `K` revokes every `TLS.time <= K + USERSIG_MAX_FUTURE_SECS`: that covers
/// every UserSig that could have been accepted before the kick, including future-dated ones.
pub const USERSIG_MAX_FUTURE_SECS: u64 = 1;

/// Kick time (unix seconds) per user. Cheap to clone (one `Arc`); reads take a shared lock
/// for a hash lookup only. One entry per kicked user (a few dozen bytes), kept forever: a
/// kick must keep refusing UserSigs that may stay valid for years.
#[derive(Clone, Default)]
pub struct Kicks {
    times: Arc<RwLock<HashMap<String, u64>>>,
}

impl Kicks {
    /// A cache holding `entries` (what the store loaded at start).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, u64)>) -> Kicks {
        let kicks = Kicks::default();
        for (user, at) in entries {
            kicks.record(&user, at);
        }
        kicks
    }

    /// The user's last kick (unix seconds), if any. A UserSig with `TLS.time` at or before
    /// it is refused.
    pub fn kicked_at(&self, user: &str) -> Option<u64> {
        self.times
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied()
    }

    /// Records a (durable) kick at `at`. Kick times only move forward: a late-arriving older
    /// kick never re-validates UserSigs a newer one refused.
    pub fn record(&self, user: &str, at: u64) {
        let mut times = self.times.write().unwrap_or_else(|e| e.into_inner());
        match times.get_mut(user) {
            Some(t) => *t = (*t).max(at),
            None => {
                times.insert(user.to_owned(), at);
            }
        }
    }

    /// Users with a kick time (`/metrics`: it grows only with the kicked users).
    pub fn len(&self) -> usize {
        self.times.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a UserSig issued at `issued` (its `TLS.time`) predates `user`'s last kick.
    pub fn revokes(&self, user: &str, issued: u64) -> bool {
        self.kicked_at(user).is_some_and(|k| issued <= k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_times_only_move_forward() {
        let k = Kicks::from_entries([("alice".to_owned(), 100), ("bob".to_owned(), 7)]);
        assert_eq!(k.len(), 2);
        assert_eq!(k.kicked_at("alice"), Some(100));
        assert_eq!(k.kicked_at("carol"), None);
        k.record("alice", 90);
        assert_eq!(
            k.kicked_at("alice"),
            Some(100),
            "an older kick changes nothing"
        );
        k.record("alice", 120);
        assert_eq!(k.kicked_at("alice"), Some(120));
        k.record("carol", 5);
        assert_eq!(k.kicked_at("carol"), Some(5));
    }

    #[test]
    fn revokes_usersigs_issued_at_or_before_the_kick() {
        let k = Kicks::default();
        assert!(k.is_empty());
        assert!(!k.revokes("alice", 0), "never kicked: nothing revoked");
        k.record("alice", 1_700_000_000);
        assert!(k.revokes("alice", 1_699_999_999));
        assert!(k.revokes("alice", 1_700_000_000), "same second: refused");
        assert!(!k.revokes("alice", 1_700_000_001));
        assert!(!k.revokes("bob", 1));
        // Clones share the same table.
        let clone = k.clone();
        clone.record("bob", 3);
        assert!(k.revokes("bob", 3));
    }
}
