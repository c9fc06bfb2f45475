//! Login validation: the checks a `login` frame must pass, in the documented order, each
//! failure with its own REFERENCE code, plus the limit on guessed UserSigs.
//!
//! The limit counts only failures that cost a guess — a UserSig whose signature is wrong —
//! per (UserID, client address), and never stands in the way of a valid UserSig: anyone can
//! send garbage in someone else's name, and that must not lock the owner out.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tim_proto::{
    Login, ERR_INTERNAL, ERR_INVALID_PARAMETERS, ERR_SDKAPPID_NOT_FOUND, ERR_SERVER_TIMEOUT,
    ERR_USERSIG_EMPTY, ERR_USERSIG_EXPIRED, ERR_USERSIG_INVALID, ERR_USERSIG_RATE_LIMITED,
};
use tim_usersig::{UserSigClaims, UserSigError};
use tokio::time::Instant;

use crate::bounded::BoundedMap;
use crate::client_addr::limit_key;
use crate::kicks::USERSIG_MAX_FUTURE_SECS;
use crate::store::StoreError;

/// Bad signatures one client address may send for one UserID within [`FAILURE_WINDOW`];
/// beyond that its bad ones are answered 70050 (valid ones still log in).
pub const MAX_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// (UserID, address) pairs tracked at most, so a spray of bad signatures cannot grow memory
/// without bound (~250 bytes each worst case).
pub const MAX_TRACKED: usize = 65_536;
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
    /// 70050: this address sent too many bad signatures for this UserID.
    #[error("too many failed UserSig checks, retry after a minute")]
    RateLimited,
    #[error("too many logins of this user (--login-rate-per-user): retry later")]
    UserRateLimited,
    #[error("too many login attempts from this address")]
    AddressRateLimited,
    /// The UserSig's own code: 70001 / 70003 / 70009 / 70013 / 70014.
    #[error("{0}")]
    UserSig(UserSigError),
    /// 70003: `TLS.time` is ahead of the server's clock by more than the allowed skew (a
    /// REST kick could not revoke such a UserSig).
    #[error(
        "UserSig TLS.time is {0} s ahead of the server's clock: check the clock of the \
         server that generated it"
    )]
    FromTheFuture(u64),
    /// 70001, as Tencent answers: the UserSig was issued at or before a REST kick (or
    /// deletion) of the user. A newly generated one works.
    #[error("UserSig revoked: issued at or before a kick of this user; generate a new one")]
    Revoked,
    /// 70500: the account could not be registered.
    #[error("internal server error")]
    Store(StoreError),
    /// 70169 (retry later): cluster mode, and Redis did not answer in time.
    #[error("session store unreachable: retry later")]
    Unavailable,
}

impl LoginError {
    /// Refused by the checks a login frame gets before anything is asked of the store
    /// (unknown app, malformed fields, a UserSig that does not verify).
    pub fn refused_by_checks(&self) -> bool {
        matches!(
            self,
            LoginError::SdkAppIdNotFound(_)
                | LoginError::InvalidUserId
                | LoginError::InvalidInstance
                | LoginError::EmptyUserSig
                | LoginError::RateLimited
                | LoginError::UserSig(_)
                | LoginError::FromTheFuture(_)
                | LoginError::Revoked
        )
    }

    pub fn code(&self) -> u32 {
        match self {
            LoginError::SdkAppIdNotFound(_) => ERR_SDKAPPID_NOT_FOUND,
            LoginError::InvalidUserId | LoginError::InvalidInstance => ERR_INVALID_PARAMETERS,
            LoginError::EmptyUserSig => ERR_USERSIG_EMPTY,
            LoginError::RateLimited
            | LoginError::UserRateLimited
            | LoginError::AddressRateLimited => ERR_USERSIG_RATE_LIMITED,
            LoginError::UserSig(e) => e.code(),
            LoginError::FromTheFuture(_) => ERR_USERSIG_INVALID,
            LoginError::Revoked => ERR_USERSIG_EXPIRED,
            LoginError::Store(_) => ERR_INTERNAL,
            LoginError::Unavailable => ERR_SERVER_TIMEOUT,
        }
    }
}

/// Verified UserSigs remembered per app at most (the last one of each user): a returning
/// user's unchanged UserSig skips base64, inflate, JSON and HMAC. ~400 bytes each.
pub const MAX_VERIFIED: usize = 65_536;
/// Longest UserSig remembered (real ones are 200–300 characters): bounds an entry's size.
pub const MAX_VERIFIED_LEN: usize = 1024;

/// A UserSig that verified for its user with this app's key, and what it claims.
struct Verified {
    usersig: Box<str>,
    time: u64,
    expire: u64,
    userbuf: Option<Vec<u8>>,
}

/// Checks the logins of one app (`apps.rs` holds one per app). Shared by all sockets.
pub struct LoginChecker {
    sdkappid: u32,
    verifier: tim_usersig::Verifier,
    failures: FailureLimiter,
    /// By UserID: the last UserSig that passed every key-, app- and user-dependent check.
    /// Only the clock can make such a UserSig fail later (expiry, checked on every hit; a
    /// REST kick is the backend's check, on the claims, hit or not).
    verified: BoundedMap<String, Verified>,
}

impl LoginChecker {
    pub fn new(sdkappid: u32, key: impl Into<String>) -> LoginChecker {
        LoginChecker::remembering(sdkappid, key, MAX_VERIFIED)
    }

    /// A checker remembering at most `max` verified UserSigs.
    pub fn remembering(sdkappid: u32, key: impl Into<String>, max: usize) -> LoginChecker {
        LoginChecker {
            sdkappid,
            verifier: tim_usersig::Verifier::new(&key.into()),
            failures: FailureLimiter::new(MAX_FAILURES, FAILURE_WINDOW, MAX_TRACKED),
            verified: BoundedMap::new(max),
        }
    }

    /// The claims of `usersig` if it verified for `user` before.
    fn remembered(&self, user: &str, usersig: &str) -> Option<UserSigClaims> {
        self.verified.with(user, |v| {
            let v = v.filter(|v| *v.usersig == *usersig)?;
            Some(UserSigClaims {
                identifier: user.to_owned(),
                sdkappid: self.sdkappid,
                time: v.time,
                expire: v.expire,
                userbuf: v.userbuf.clone(),
            })
        })
    }

    /// The full check: [`tim_usersig::verify`] with this app's key. `Ok((claims, true))`:
    /// the UserSig was remembered.
    fn verify(&self, login: &Login, now_unix: u64) -> Result<(UserSigClaims, bool), UserSigError> {
        if let Some(claims) = self.remembered(&login.user, &login.usersig) {
            // What `verify` checks last, and the only outcome that can change for one
            // UserSig, user and key.
            if now_unix >= claims.expires_at() {
                self.verified.remove(login.user.as_str());
                return Err(UserSigError::Expired);
            }
            return Ok((claims, true));
        }
        self.verifier
            .verify(&login.usersig, self.sdkappid, &login.user, now_unix)
            .map(|claims| (claims, false))
    }

    /// Remembers a UserSig that passed every check for `login.user`.
    fn remember(&self, login: &Login, claims: &UserSigClaims) {
        if login.usersig.len() > MAX_VERIFIED_LEN {
            return;
        }
        self.verified.insert(
            login.user.clone(),
            Verified {
                usersig: login.usersig.as_str().into(),
                time: claims.time,
                expire: claims.expire,
                userbuf: claims.userbuf.clone(),
            },
        );
    }

    /// Verified UserSigs remembered now (`timd_state_entries{map="verified_usersigs"}`).
    pub fn remembered_count(&self) -> usize {
        self.verified.len()
    }

    /// Validates `login` from `client` at `now_unix` (seconds). Order: SDKAppID, UserID,
    /// instance id, empty UserSig, the UserSig itself (a bad signature counts against
    /// `client` for that UserID, and past the limit is answered 70050), its issue time
    /// (not in the future). Whether a REST kick revoked it is the backend's to say, atomically
    /// with the admission (`backend/`).
    pub fn check(
        &self,
        login: &Login,
        now_unix: u64,
        client: IpAddr,
    ) -> Result<UserSigClaims, LoginError> {
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
        let (claims, remembered) = match self.verify(login, now_unix) {
            Ok(verified) => verified,
            Err(UserSigError::BadSignature) => {
                let limited = self.failures.record(&login.user, client, Instant::now());
                return Err(if limited {
                    LoginError::RateLimited
                } else {
                    LoginError::UserSig(UserSigError::BadSignature)
                });
            }
            Err(e) => return Err(LoginError::UserSig(e)),
        };
        if let Some(ahead) = issued_ahead(claims.time, now_unix) {
            return Err(LoginError::FromTheFuture(ahead));
        }
        if !remembered {
            self.remember(login, &claims);
        }
        Ok(claims)
    }

    /// The guessed-UserSig limiter (for tests and metrics).
    pub fn failures(&self) -> &FailureLimiter {
        &self.failures
    }
}

/// How far a UserSig issued at `time` is ahead of `now`, if beyond the allowed skew.
pub fn issued_ahead(time: u64, now: u64) -> Option<u64> {
    let ahead = time.saturating_sub(now);
    (ahead > USERSIG_MAX_FUTURE_SECS).then_some(ahead)
}

/// Instance ids are client-chosen: bound them and keep them printable (they reach logs).
pub fn is_valid_instance_id(s: &str) -> bool {
    (1..=MAX_INSTANCE_ID_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Shards of the limiter: a prune holds one shard's lock, over a sixteenth of the entries.
const LIMITER_SHARDS: usize = 16;

type Key = (String, IpAddr);

struct Shard {
    entries: HashMap<Key, VecDeque<Instant>>,
    /// When this shard was last pruned: a full shard prunes at most once per this long.
    pruned: Option<Instant>,
}

/// Counts bad signatures per (UserID, client address) over a sliding window.
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    max_per_shard: usize,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// Prunes run so far (each a scan of one shard).
    prunes: AtomicUsize,
}

impl FailureLimiter {
    pub fn new(max_failures: usize, window: Duration, max_tracked: usize) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            max_per_shard: max_tracked.div_ceil(LIMITER_SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..LIMITER_SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::new(),
                        pruned: None,
                    })
                })
                .collect(),
            prunes: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % LIMITER_SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recent(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
    }

    /// Records one bad signature for `user` from `client` at `now`; returns whether the
    /// pair is now over the limit (this one included).
    pub fn record(&self, user: &str, client: IpAddr, now: Instant) -> bool {
        let key = (user.to_owned(), limit_key(client));
        let mut shard = self.shard(&key);
        if let Some(times) = shard.entries.get_mut(&key) {
            self.recent(times, now);
            let limited = times.len() >= self.max_failures;
            // Only the last `max_failures` matter: memory per pair stays bounded.
            if limited {
                times.pop_front();
            }
            times.push_back(now);
            return limited;
        }
        if shard.entries.len() >= self.max_per_shard {
            // Prune the aged-out pairs, but at most once per window/8 per shard: a flood
            // of new pairs costs one bounded scan every few seconds, not one per failure.
            let due = shard
                .pruned
                .is_none_or(|t| now.saturating_duration_since(t) >= self.window / 8);
            if due {
                shard.pruned = Some(now);
                self.prunes.fetch_add(1, Ordering::Relaxed);
                let window = self.window;
                shard.entries.retain(|_, times| {
                    times
                        .back()
                        .is_some_and(|t| now.saturating_duration_since(*t) < window)
                });
            }
            if shard.entries.len() >= self.max_per_shard {
                tracing::warn!("failed-login limiter full; not tracking another pair");
                return false;
            }
        }
        shard.entries.insert(key, VecDeque::from([now]));
        self.max_failures == 0
    }

    /// Whether `user` from `client` is over the limit at `now`.
    pub fn is_limited(&self, user: &str, client: IpAddr, now: Instant) -> bool {
        let key = (user.to_owned(), limit_key(client));
        let mut shard = self.shard(&key);
        let Some(times) = shard.entries.get_mut(&key) else {
            return false;
        };
        self.recent(times, now);
        times.len() >= self.max_failures
    }

    /// Pairs currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tim_proto::Platform;

    const APP: u32 = 1_400_000_001;
    const KEY: &str = "unit-test-key";
    const NOW: u64 = 1_700_000_000;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn here() -> IpAddr {
        addr("192.0.2.1")
    }

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
        code_from(checker, l, here())
    }

    fn code_from(checker: &LoginChecker, l: &Login, client: IpAddr) -> u32 {
        checker.check(l, NOW, client).unwrap_err().code()
    }

    /// A UserSig for `user` signed with a key the sender guessed (wrong).
    fn guessed(user: &str) -> String {
        tim_usersig::generate(APP, "guess", user, NOW, 3600)
    }

    #[test]
    fn every_failure_has_its_code_in_order() {
        let c = LoginChecker::new(APP, KEY);
        let good = tim_usersig::generate(APP, KEY, "alice", NOW - 10, 3600);
        let claims = c.check(&login("alice", good.clone()), NOW, here()).unwrap();
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
        assert_eq!(code(&c, &login("alice", guessed("alice"))), 70009);
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

    /// Anyone can send garbage in alice's name: it must never keep alice out.
    #[test]
    fn garbage_in_someones_name_never_locks_them_out() {
        let c = LoginChecker::new(APP, KEY);
        let attacker = addr("198.51.100.66");
        for _ in 0..100 {
            // Free to produce: not base64, another user's UserSig, an expired one.
            assert_eq!(
                code_from(&c, &login("alice", "garbage".into()), attacker),
                70003
            );
            let bobs = tim_usersig::generate(APP, KEY, "bob", NOW, 3600);
            assert_eq!(code_from(&c, &login("alice", bobs), attacker), 70013);
        }
        assert_eq!(c.failures().tracked(), 0, "no guess was made");
        // Guesses from the attacker's address: limited there only.
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                code_from(&c, &login("alice", guessed("alice")), attacker),
                70009
            );
        }
        assert_eq!(
            code_from(&c, &login("alice", guessed("alice")), attacker),
            70050
        );
        // Alice, from her own address, is not affected at all.
        let good = tim_usersig::generate(APP, KEY, "alice", NOW, 3600);
        assert!(c.check(&login("alice", good.clone()), NOW, here()).is_ok());
        assert_eq!(code(&c, &login("alice", guessed("alice"))), 70009);
        // And a valid UserSig passes even from the limited address (renewals too).
        assert!(c.check(&login("alice", good), NOW, attacker).is_ok());
    }

    /// A remembered UserSig is only a shortcut: every login it serves gets the answer a
    /// fresh check would give (expiry, another user, another app or key, the future).
    #[test]
    fn a_remembered_usersig_is_refused_wherever_a_fresh_check_refuses_it() {
        let c = LoginChecker::new(APP, KEY);
        let sig = tim_usersig::generate(APP, KEY, "alice", NOW - 10, 100);
        let alice = login("alice", sig.clone());
        let fresh = c.check(&alice, NOW, here()).unwrap();
        assert_eq!(c.remembered_count(), 1);
        // Served from memory: the same claims, and no second entry.
        assert_eq!(c.verify(&alice, NOW).unwrap(), (fresh.clone(), true));
        assert_eq!(c.check(&alice, NOW + 1, here()).unwrap(), fresh);
        assert_eq!(c.remembered_count(), 1);
        // Another user presenting it: 70013, as fresh (remembered per UserID).
        assert_eq!(code(&c, &login("bob", sig.clone())), 70013);
        // Another app, or the same app id under another key: each app remembers its own.
        let other_app = LoginChecker::new(APP + 1, KEY);
        let wrong = Login {
            sdkappid: APP + 1,
            ..alice.clone()
        };
        assert_eq!(code(&other_app, &wrong), 70014);
        let other_key = LoginChecker::new(APP, "another-key");
        assert_eq!(code(&other_key, &alice), 70009);
        // A different UserSig of alice's is checked afresh (a forged one refused) and a
        // valid one replaces the remembered one.
        let forged = login("alice", guessed("alice"));
        assert_eq!(code(&c, &forged), 70009);
        // Expiry: exactly when a fresh check expires it, and forgotten then.
        let end = NOW - 10 + 100;
        assert!(c.check(&alice, end - 1, here()).is_ok());
        let e = c.check(&alice, end, here()).unwrap_err();
        assert_eq!(e, LoginError::UserSig(UserSigError::Expired));
        assert_eq!(c.remembered_count(), 0);
        assert_eq!(
            c.check(&alice, end, here()).unwrap_err(),
            LoginError::UserSig(UserSigError::Expired),
            "fresh check, same answer"
        );
        // Issued ahead of the clock: refused beyond the skew whether remembered or not.
        let ahead = login(
            "carol",
            tim_usersig::generate(APP, KEY, "carol", NOW + USERSIG_MAX_FUTURE_SECS, 3600),
        );
        assert!(c.check(&ahead, NOW, here()).is_ok());
        assert_eq!(c.verify(&ahead, NOW - 1).map(|v| v.1), Ok(true));
        assert_eq!(
            c.check(&ahead, NOW - 1, here()).unwrap_err(),
            LoginError::FromTheFuture(USERSIG_MAX_FUTURE_SECS + 1)
        );
    }

    #[test]
    fn remembered_usersigs_are_bounded() {
        let c = LoginChecker::remembering(APP, KEY, 64);
        for i in 0..1000 {
            let user = format!("u{i}");
            let sig = tim_usersig::generate(APP, KEY, &user, NOW, 3600);
            assert!(c.check(&login(&user, sig), NOW, here()).is_ok());
        }
        assert_eq!(c.remembered_count(), 64);
        // A renewed UserSig replaces its user's entry rather than adding one.
        let renewed = tim_usersig::generate(APP, KEY, "u999", NOW + 1, 3600);
        assert!(c.check(&login("u999", renewed), NOW + 1, here()).is_ok());
        assert_eq!(c.remembered_count(), 64);
        // Too long to remember (a userbuf can make one so): checked, not remembered.
        let c = LoginChecker::new(APP, KEY);
        // Bytes that do not compress (a linear congruential sequence).
        let noise: Vec<u8> = (0u32..2048)
            .scan(12345u32, |x, _| {
                *x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                Some((*x >> 16) as u8)
            })
            .collect();
        let long = tim_usersig::generate_with_userbuf(APP, KEY, "dave", NOW, 3600, &noise);
        assert!(long.len() > MAX_VERIFIED_LEN);
        let l = login("dave", long);
        assert!(c.check(&l, NOW, here()).is_ok());
        assert_eq!(c.remembered_count(), 0);
        assert_eq!(c.verify(&l, NOW).map(|v| v.1), Ok(false));
    }

    #[test]
    fn usersigs_from_the_future_are_refused_beyond_the_skew() {
        let c = LoginChecker::new(APP, KEY);
        let ahead = |s: u64| tim_usersig::generate(APP, KEY, "alice", NOW + s, 3600);
        assert!(c
            .check(&login("alice", ahead(USERSIG_MAX_FUTURE_SECS)), NOW, here())
            .is_ok());
        let e = c
            .check(
                &login("alice", ahead(USERSIG_MAX_FUTURE_SECS + 1)),
                NOW,
                here(),
            )
            .unwrap_err();
        assert_eq!(e, LoginError::FromTheFuture(USERSIG_MAX_FUTURE_SECS + 1));
        assert_eq!(e.code(), 70003);
        assert!(e.to_string().contains("ahead of the server's clock"), "{e}");
    }

    #[test]
    fn limiter_window_slides_and_memory_is_bounded() {
        // Room for every pair here (with one pair per shard, "u" and "v" could share a
        // shard and "v" would go untracked: a random hasher made that a 1-in-16 flake).
        let l = FailureLimiter::new(3, Duration::from_secs(60), 1024);
        let t0 = Instant::now();
        let a = addr("192.0.2.7");
        let limited: Vec<bool> = (0..5)
            .map(|i| l.record("u", a, t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(limited, [false, false, false, true, true]);
        assert!(l.is_limited("u", a, t0 + Duration::from_secs(5)));
        // IPv6 neighbours in one /64 are one client; another /64 is another.
        let v6 = |s: &str| addr(s);
        for _ in 0..3 {
            l.record("v", v6("2001:db8:0:1::1"), t0);
        }
        assert!(l.is_limited("v", v6("2001:db8:0:1::ffff"), t0));
        assert!(!l.is_limited("v", v6("2001:db8:0:2::1"), t0));
        // Failures at 2, 3, 4 s: at 62 s only two remain in the window.
        assert!(!l.is_limited("u", a, t0 + Duration::from_secs(62)));
        // One pair per shard at most here: with every shard full, new pairs go
        // untracked until the old ones age out and a prune is due.
        let l = FailureLimiter::new(3, Duration::from_secs(60), LIMITER_SHARDS);
        for i in 0..1000 {
            l.record(&format!("user{i}"), a, t0);
        }
        assert_eq!(l.tracked(), LIMITER_SHARDS, "every shard full");
        // Untracked, so never limited, however often it fails.
        for _ in 0..5 {
            assert!(!l.record("late", a, t0 + Duration::from_secs(1)));
        }
        assert!(!l.is_limited("late", a, t0 + Duration::from_secs(1)));
        // Once the old pairs have aged out, its shard's prune makes room for it.
        let t = t0 + Duration::from_secs(120);
        assert!(!l.record("late", a, t));
        assert_eq!(l.tracked(), LIMITER_SHARDS, "one pair out, one in");
        assert!(!l.record("late", a, t));
        assert!(!l.record("late", a, t));
        assert!(
            l.record("late", a, t),
            "tracked: the fourth failure is over 3"
        );
        assert!(l.is_limited("late", a, t));
    }

    /// The documented bounds, in virtual time (the limiter takes the time as an argument):
    /// at most [`MAX_TRACKED`] pairs, and at most one prune per shard per window / 8
    /// (7.5 s), which drops exactly the pairs whose last failure left the window.
    #[test]
    fn the_limiter_holds_its_documented_bounds() {
        let c = LoginChecker::new(APP, KEY);
        let l = c.failures();
        assert_eq!(FAILURE_WINDOW / 8, Duration::from_millis(7_500));
        let t0 = Instant::now();
        let a = addr("192.0.2.9");
        let prunes = || l.prunes.load(Ordering::Relaxed);
        // Twice the cap of new pairs at once: exactly the cap is tracked (every shard full),
        // and each shard, once full, pruned once (finding nothing to drop).
        for i in 0..2 * MAX_TRACKED {
            l.record(&format!("a{i}"), a, t0);
        }
        assert_eq!(l.tracked(), MAX_TRACKED);
        assert_eq!(prunes(), LIMITER_SHARDS);
        // Just under 7.5 s later: still full, no shard scans again.
        let almost = t0 + Duration::from_millis(7_499);
        for i in 0..10_000 {
            l.record(&format!("b{i}"), a, almost);
        }
        assert_eq!(prunes(), LIMITER_SHARDS, "no prune within 7.5 s");
        assert_eq!(l.tracked(), MAX_TRACKED);
        // At 7.5 s each shard may prune once more; nothing has aged out yet (60 s window).
        let due = t0 + Duration::from_millis(7_500);
        for i in 0..10_000 {
            l.record(&format!("c{i}"), a, due);
        }
        assert_eq!(prunes(), 2 * LIMITER_SHARDS, "one prune per shard");
        assert_eq!(l.tracked(), MAX_TRACKED);
        // A pair still failing keeps its entry through a prune; the rest age out at 60 s.
        let kept = "a0";
        let refreshed = t0 + Duration::from_secs(30);
        l.record(kept, a, refreshed);
        let aged = t0 + FAILURE_WINDOW;
        for i in 0..10_000 {
            l.record(&format!("d{i}"), a, aged);
        }
        assert_eq!(prunes(), 3 * LIMITER_SHARDS);
        // Every shard emptied of the t0 pairs, then filled again by the "d" pairs (10,000
        // of them, 625 a shard on average, far under the 4,096 a shard holds) and `kept`.
        assert_eq!(l.tracked(), 10_000 + 1);
        // Its failure at 30 s is still in the window (the one at 0 s is not): nine more
        // make ten, and the eleventh is over the limit.
        assert!(!l.is_limited(kept, a, aged));
        for _ in 0..MAX_FAILURES - 1 {
            assert!(!l.record(kept, a, aged));
        }
        assert!(l.record(kept, a, aged));
    }

    /// A flood of new pairs on a full limiter does not rescan it for every failure.
    #[test]
    fn a_full_limiter_prunes_at_most_once_per_interval() {
        let l = FailureLimiter::new(10, Duration::from_secs(60), 1024);
        let t0 = Instant::now();
        let a = addr("192.0.2.8");
        for i in 0..20_000 {
            l.record(&format!("u{i}"), a, t0);
        }
        let started = std::time::Instant::now();
        for i in 0..50_000 {
            l.record(&format!("x{i}"), a, t0 + Duration::from_millis(1));
        }
        let per_call = started.elapsed() / 50_000;
        println!("record() on a full limiter: {per_call:?} per call");
        assert!(l.tracked() <= 1024 + LIMITER_SHARDS);
        assert!(
            l.prunes.load(Ordering::Relaxed) <= LIMITER_SHARDS,
            "{} scans for 70,000 failures",
            l.prunes.load(Ordering::Relaxed)
        );
    }
}
