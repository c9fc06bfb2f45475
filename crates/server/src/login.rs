//! Login validation: the checks a `login` frame must pass, in the documented order, each
//! failure with its own REFERENCE code, plus the per-user limit on failed UserSig checks.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tim_proto::{
    Login, ERR_INTERNAL, ERR_INVALID_PARAMETERS, ERR_SDKAPPID_NOT_FOUND, ERR_USERSIG_EMPTY,
    ERR_USERSIG_EXPIRED, ERR_USERSIG_RATE_LIMITED,
};
use tim_usersig::{UserSigClaims, UserSigError};
use tokio::time::Instant;

use crate::kicks::Kicks;
use crate::store::StoreError;

/// Failed UserSig checks a user may have within [`FAILURE_WINDOW`] before further logins
/// are refused unverified (70050).
pub const MAX_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Users tracked by the limiter at most, so a spray of failed logins for random UserIDs
/// cannot grow memory without bound (~1 KiB each worst case).
pub const MAX_TRACKED_USERS: usize = 65_536;
/// Longest instance id accepted. The SDK's ids are short; this only bounds memory.
pub const MAX_INSTANCE_ID_LEN: usize = 64;

/// Why a login was refused. `code()` is the wire code; `Display` is the wire message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// 70020.
    #[error("SDKAppID {0} not found")]
    SdkAppIdNotFound(u32),
    /// 70402.
    #[error("invalid UserID: it must be 1 to 32 bytes of A-Z a-z 0-9 _ -")]
    InvalidUserId,
    /// 70402.
    #[error("invalid instance id: it must be 1 to 64 printable ASCII characters")]
    InvalidInstance,
    /// 70002.
    #[error("UserSig is empty")]
    EmptyUserSig,
    /// 70050.
    #[error("too many failed UserSig checks, retry after a minute")]
    RateLimited,
    /// The UserSig's own code: 70001 / 70003 / 70009 / 70013 / 70014.
    #[error("{0}")]
    UserSig(UserSigError),
    /// 70001, as Tencent answers: the UserSig was issued at or before a REST kick (or
    /// deletion) of the user. A newly generated one works.
    #[error("UserSig revoked: issued at or before a kick of this user; generate a new one")]
    Revoked,
    /// 70500: the account could not be registered.
    #[error("internal server error")]
    Store(StoreError),
}

impl LoginError {
    pub fn code(&self) -> u32 {
        match self {
            LoginError::SdkAppIdNotFound(_) => ERR_SDKAPPID_NOT_FOUND,
            LoginError::InvalidUserId | LoginError::InvalidInstance => ERR_INVALID_PARAMETERS,
            LoginError::EmptyUserSig => ERR_USERSIG_EMPTY,
            LoginError::RateLimited => ERR_USERSIG_RATE_LIMITED,
            LoginError::UserSig(e) => e.code(),
            LoginError::Revoked => ERR_USERSIG_EXPIRED,
            LoginError::Store(_) => ERR_INTERNAL,
        }
    }
}

/// Checks logins for the configured app. Shared by all sockets.
pub struct LoginChecker {
    sdkappid: u32,
    key: String,
    failures: FailureLimiter,
    kicks: Kicks,
}

impl LoginChecker {
    pub fn new(sdkappid: u32, key: impl Into<String>) -> LoginChecker {
        LoginChecker {
            sdkappid,
            key: key.into(),
            failures: FailureLimiter::new(MAX_FAILURES, FAILURE_WINDOW, MAX_TRACKED_USERS),
            kicks: Kicks::default(),
        }
    }

    /// Refuses UserSigs issued at or before the users' REST kicks in `kicks` (70001).
    pub fn with_kicks(self, kicks: Kicks) -> LoginChecker {
        LoginChecker { kicks, ..self }
    }

    /// Validates `login` at `now_unix` (seconds). Order: SDKAppID, UserID, instance id,
    /// empty UserSig, the failure limit, then the UserSig itself (whose failures count),
    /// then its issue time against the user's last REST kick.
    pub fn check(&self, login: &Login, now_unix: u64) -> Result<UserSigClaims, LoginError> {
        if login.sdkappid != self.sdkappid {
            return Err(LoginError::SdkAppIdNotFound(login.sdkappid));
        }
        if !tim_proto::is_valid_user_id(&login.user) {
            return Err(LoginError::InvalidUserId);
        }
        if !is_valid_instance_id(&login.instance) {
            return Err(LoginError::InvalidInstance);
        }
        if login.usersig.is_empty() {
            return Err(LoginError::EmptyUserSig);
        }
        let now = Instant::now();
        if self.failures.is_limited(&login.user, now) {
            return Err(LoginError::RateLimited);
        }
        tim_usersig::verify(
            &login.usersig,
            &self.key,
            self.sdkappid,
            &login.user,
            now_unix,
        )
        .map_err(|e| {
            self.failures.record(&login.user, now);
            LoginError::UserSig(e)
        })
        .and_then(|claims| {
            if self.kicks.revokes(&login.user, claims.time) {
                Err(LoginError::Revoked)
            } else {
                Ok(claims)
            }
        })
    }
}

/// Instance ids are client-chosen: bound them and keep them printable (they reach logs).
pub fn is_valid_instance_id(s: &str) -> bool {
    (1..=MAX_INSTANCE_ID_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Counts failed UserSig checks per user over a sliding window.
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    max_users: usize,
    users: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max_failures: usize, window: Duration, max_users: usize) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            max_users,
            users: Mutex::default(),
        }
    }

    fn recent(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
    }

    /// Whether `user` already has `max_failures` failures within the window.
    pub fn is_limited(&self, user: &str, now: Instant) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = users.get_mut(user) else {
            return false;
        };
        self.recent(times, now);
        if times.is_empty() {
            users.remove(user);
            return false;
        }
        times.len() >= self.max_failures
    }

    /// Records one failure of `user` at `now`.
    pub fn record(&self, user: &str, now: Instant) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if !users.contains_key(user) && users.len() >= self.max_users {
            // Prune everyone whose failures have all aged out; if the map is still full,
            // this user goes untracked rather than memory growing.
            users.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < self.window)
            });
            if users.len() >= self.max_users {
                tracing::warn!("failed-login limiter full; not tracking another user");
                return;
            }
        }
        let times = users.entry(user.to_owned()).or_default();
        self.recent(times, now);
        // Only the last `max_failures` matter: keep memory per user bounded too.
        if times.len() >= self.max_failures {
            times.pop_front();
        }
        times.push_back(now);
    }

    /// Users currently tracked.
    pub fn tracked_users(&self) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tim_proto::Platform;

    const APP: u32 = 1_400_000_001;
    const KEY: &str = "unit-test-key";
    const NOW: u64 = 1_700_000_000;

    fn login(user: &str, usersig: String) -> Login {
        Login {
            seq: 1,
            sdkappid: APP,
            user: user.into(),
            usersig,
            platform: Platform::Web,
            instance: "i1".into(),
        }
    }

    fn code(checker: &LoginChecker, l: &Login) -> u32 {
        checker.check(l, NOW).unwrap_err().code()
    }

    #[test]
    fn every_failure_has_its_code_in_order() {
        let c = LoginChecker::new(APP, KEY);
        let good = tim_usersig::generate(APP, KEY, "alice", NOW - 10, 3600);
        let claims = c.check(&login("alice", good.clone()), NOW).unwrap();
        assert_eq!(claims.identifier, "alice");

        let wrong_app = Login {
            sdkappid: 1,
            ..login("alice", good.clone())
        };
        assert_eq!(code(&c, &wrong_app), 70020);
        // SDKAppID is checked before the UserID.
        let wrong_both = Login {
            sdkappid: 1,
            ..login("a b", good.clone())
        };
        assert_eq!(code(&c, &wrong_both), 70020);
        assert_eq!(code(&c, &login("a b", good.clone())), 70402);
        assert_eq!(code(&c, &login(&"x".repeat(33), good.clone())), 70402);
        let bad_instance = Login {
            instance: String::new(),
            ..login("alice", good.clone())
        };
        assert_eq!(code(&c, &bad_instance), 70402);
        assert_eq!(code(&c, &login("alice", String::new())), 70002);
        assert_eq!(code(&c, &login("alice", "garbage!".into())), 70003);
        let other_key = tim_usersig::generate(APP, "other", "alice", NOW, 3600);
        assert_eq!(code(&c, &login("alice", other_key)), 70009);
        let other_user = tim_usersig::generate(APP, KEY, "bob", NOW, 3600);
        assert_eq!(code(&c, &login("alice", other_user)), 70013);
        let other_app = tim_usersig::generate(APP + 1, KEY, "alice", NOW, 3600);
        assert_eq!(code(&c, &login("alice", other_app)), 70014);
        let expired = tim_usersig::generate(APP, KEY, "alice", NOW - 100, 100);
        assert_eq!(code(&c, &login("alice", expired)), 70001);
        assert_eq!(
            LoginError::RateLimited.to_string(),
            "too many failed UserSig checks, retry after a minute"
        );
        assert_eq!(LoginError::Store(StoreError::Unavailable).code(), 70500);
    }

    #[test]
    fn ten_failures_lock_the_user_out_unverified() {
        let c = LoginChecker::new(APP, KEY);
        for _ in 0..MAX_FAILURES {
            assert_eq!(code(&c, &login("mallory", "garbage".into())), 70003);
        }
        // Even a valid UserSig is refused now, without being verified.
        let good = tim_usersig::generate(APP, KEY, "mallory", NOW, 3600);
        assert_eq!(code(&c, &login("mallory", good.clone())), 70050);
        // Other users are unaffected; empty UserSigs are not "checks" and are not limited.
        let other = tim_usersig::generate(APP, KEY, "alice", NOW, 3600);
        assert!(c.check(&login("alice", other), NOW).is_ok());
        assert_eq!(code(&c, &login("mallory", String::new())), 70002);
    }

    #[test]
    fn limiter_window_slides_and_memory_is_bounded() {
        let l = FailureLimiter::new(3, Duration::from_secs(60), 2);
        let t0 = Instant::now();
        for i in 0..5 {
            l.record("u", t0 + Duration::from_secs(i));
        }
        assert!(l.is_limited("u", t0 + Duration::from_secs(5)));
        // Failures at 2, 3, 4 s: at 62 s only two remain in the window.
        assert!(!l.is_limited("u", t0 + Duration::from_secs(62)));
        assert!(!l.is_limited("u", t0 + Duration::from_secs(200)));
        assert_eq!(l.tracked_users(), 0, "aged-out users are dropped");

        l.record("a", t0);
        l.record("b", t0);
        l.record("c", t0); // full, nothing expired: not tracked
        assert_eq!(l.tracked_users(), 2);
        assert!(!l.is_limited("c", t0));
        l.record("c", t0 + Duration::from_secs(61)); // a and b aged out: pruned
        assert_eq!(l.tracked_users(), 1);
    }
}
