//! Abuse limits on `/ws`: concurrent connections in total and per client address, new
//! connections per second per address, and login attempts (login, resume, renew frames)
//! per second per address. Each refusal has its own close code and metric.
//!
//! The client address is the one `client_addr.rs` resolves (the TCP peer, or the
//! `X-Forwarded-For` hop of a trusted proxy), counted per IPv4 address or IPv6 /64. The
//! per-address state lives in sharded maps (256k addresses), pruned when a shard fills up;
//! what cannot be tracked (a shard full of live addresses: an IPv6 flood from many /64s)
//! shares one overflow entry, held to one address's limits together.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tim_proto::close;
use tokio::time::Instant;

use crate::client_addr::limit_key;
use crate::token_bucket::TokenBucket;

/// Why a connection or a login attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `Origin` not allowed (`--allowed-origins`).
    Origin,
    /// `--max-connections` reached.
    MaxConnections,
    /// `--max-connections-per-addr` reached for this client address.
    MaxConnectionsPerAddr,
    /// `--connection-rate-per-addr` exceeded.
    ConnectionRate,
    /// `--login-rate-per-addr` exceeded.
    LoginRate,
    /// `--login-rate-per-user` exceeded (counted once the UserSig or ticket verified).
    UserLoginRate,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Origin,
        Refusal::MaxConnections,
        Refusal::MaxConnectionsPerAddr,
        Refusal::ConnectionRate,
        Refusal::LoginRate,
        Refusal::UserLoginRate,
    ];

    /// The WebSocket close code the client gets.
    pub const fn close_code(self) -> u16 {
        match self {
            Refusal::Origin => close::ORIGIN_NOT_ALLOWED,
            Refusal::MaxConnections => close::SERVER_FULL,
            Refusal::MaxConnectionsPerAddr => close::TOO_MANY_CONNECTIONS,
            Refusal::ConnectionRate => close::CONNECTION_RATE,
            Refusal::LoginRate | Refusal::UserLoginRate => close::LOGIN_RATE,
        }
    }

    /// The close reason (and the metric's `reason` label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::Origin => "origin not allowed",
            Refusal::MaxConnections => "server full",
            Refusal::MaxConnectionsPerAddr => "too many connections from this address",
            Refusal::ConnectionRate => "too many new connections from this address",
            Refusal::LoginRate => "too many login attempts from this address",
            Refusal::UserLoginRate => "too many login attempts for this user: retry later",
        }
    }

    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::Origin => "origin",
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerAddr => "max_connections_per_addr",
            Refusal::ConnectionRate => "connection_rate",
            Refusal::LoginRate => "login_rate",
            Refusal::UserLoginRate => "login_rate_per_user",
        }
    }
}

/// The configured limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub max_connections: u32,
    pub max_connections_per_addr: u32,
    /// New connections per second per address (burst: one second's worth).
    pub connection_rate_per_addr: u32,
    /// Login, resume and renew frames per second per address (burst: one second's worth).
    pub login_rate_per_addr: u32,
    /// Verified logins, resumes and renewals per second per user and app on this node
    /// (burst: one second's worth): one user cannot fill the store (Redis's one thread).
    pub login_rate_per_user: u32,
    /// Refused connections being upgraded to be told why (each holds a task for up to two
    /// [`crate::gateway::CLOSE_DRAIN`]s); beyond it a refused handshake gets HTTP 503 at once.
    pub max_refusals_in_flight: u32,
}

/// Defaults: room for a large NAT behind one address, not for one host taking the server.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100_000;
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDR: u32 = 1_000;
pub const DEFAULT_CONNECTION_RATE_PER_ADDR: u32 = 100;
pub const DEFAULT_LOGIN_RATE_PER_ADDR: u32 = 100;
pub const DEFAULT_LOGIN_RATE_PER_USER: u32 = 20;
pub const DEFAULT_MAX_REFUSALS_IN_FLIGHT: u32 = 1024;

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_addr: DEFAULT_MAX_CONNECTIONS_PER_ADDR,
            connection_rate_per_addr: DEFAULT_CONNECTION_RATE_PER_ADDR,
            login_rate_per_addr: DEFAULT_LOGIN_RATE_PER_ADDR,
            login_rate_per_user: DEFAULT_LOGIN_RATE_PER_USER,
            max_refusals_in_flight: DEFAULT_MAX_REFUSALS_IN_FLIGHT,
        }
    }
}

const SHARDS: usize = 16;
/// The key every address shares once the table is full of live ones (`::`: never a
/// client's address).
const OVERFLOW: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
/// Addresses tracked per shard at most (256k in all).
const MAX_PER_SHARD: usize = 16_384;
/// An address with nothing open and idle this long is forgotten at the next prune.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Addr {
    open: u32,
    connects: TokenBucket,
    /// Frames that passed the checks (their UserSig or ticket verified).
    logins: TokenBucket,
    /// Frames the checks refused: a budget of their own, so that garbage sent from behind a
    /// shared address (a NAT) never spends what valid logins from there need.
    bad: TokenBucket,
    seen: Instant,
}

struct Shard {
    addrs: HashMap<IpAddr, Addr>,
}

/// Users tracked per shard at most (256k in all); a user idle for a second has a full
/// bucket again and is forgotten first.
const MAX_USERS_PER_SHARD: usize = 16_384;

/// Keyed by the (app, user) hash (a 64-bit keyed hash: two users share a bucket by chance
/// only).
type UserShard = HashMap<u64, TokenBucket>;

struct Inner {
    settings: LimitSettings,
    open: AtomicUsize,
    refusing: AtomicUsize,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    users: Box<[Mutex<UserShard>]>,
}

/// The limits, shared by every socket. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

/// Holds one admitted connection's place in the counts; dropping it frees the place.
pub struct Admitted {
    limits: Limits,
    key: Option<IpAddr>,
}

/// Holds one refused connection's place while it is told why.
pub struct Refusing {
    limits: Limits,
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.limits.inner.refusing.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.limits.inner.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(key) = self.key {
            if let Some(a) = self.limits.shard(key).addrs.get_mut(&key) {
                a.open = a.open.saturating_sub(1);
            }
        }
    }
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Limits {
        Limits {
            inner: Arc::new(Inner {
                settings,
                open: AtomicUsize::new(0),
                refusing: AtomicUsize::new(0),
                hasher: RandomState::new(),
                shards: (0..SHARDS)
                    .map(|_| {
                        Mutex::new(Shard {
                            addrs: HashMap::new(),
                        })
                    })
                    .collect(),
                users: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            }),
        }
    }

    /// One verified login, resume or renewal of `user` of `app` at `now`: false when over
    /// `--login-rate-per-user`. Counted after the UserSig or ticket verified (no store call
    /// yet), so nobody can spend another user's budget.
    pub fn user_login(&self, app: u32, user: &str, now: Instant) -> bool {
        let rate = self.inner.settings.login_rate_per_user;
        if rate == 0 {
            return true;
        }
        let key = self.inner.hasher.hash_one((app, user));
        let mut shard = self.inner.users[(key as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = shard.get_mut(&key) {
            return bucket.take(rate, now);
        }
        if shard.len() >= MAX_USERS_PER_SHARD {
            shard.retain(|_, b| !b.refilled(rate, now));
            if shard.len() >= MAX_USERS_PER_SHARD {
                tracing::warn!("per-user login limit: table full; user not tracked");
                return true;
            }
        }
        let mut bucket = TokenBucket::full(rate, now);
        let ok = bucket.take(rate, now);
        shard.insert(key, bucket);
        ok
    }

    pub fn settings(&self) -> LimitSettings {
        self.inner.settings
    }

    /// A place for one refused connection to be upgraded and told why, if there is one
    /// (`max_refusals_in_flight`); dropping it frees the place.
    pub fn begin_refusal(&self) -> Option<Refusing> {
        let cap = self.inner.settings.max_refusals_in_flight as usize;
        let before = self.inner.refusing.fetch_add(1, Ordering::Relaxed);
        let place = Refusing {
            limits: self.clone(),
        };
        (cap == 0 || before < cap).then_some(place)
    }

    /// Open connections (admitted, not yet dropped).
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    fn shard(&self, key: IpAddr) -> MutexGuard<'_, Shard> {
        let i = (self.inner.hasher.hash_one(key) as usize) % SHARDS;
        self.inner.shards[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `client` at `now`, or says which limit refuses it.
    /// Checked in order: the total, the address's open connections, its connection rate.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        let s = self.inner.settings;
        let total = self.inner.open.fetch_add(1, Ordering::Relaxed);
        // From here on, `admitted` undoes the count if we refuse.
        let mut admitted = Admitted {
            limits: self.clone(),
            key: None,
        };
        if s.max_connections != 0 && total >= s.max_connections as usize {
            return Err(Refusal::MaxConnections);
        }
        self.with_entry(limit_key(client), now, |addr, key| {
            if s.max_connections_per_addr != 0 && addr.open >= s.max_connections_per_addr {
                return Err(Refusal::MaxConnectionsPerAddr);
            }
            if s.connection_rate_per_addr != 0
                && !addr.connects.take(s.connection_rate_per_addr, now)
            {
                return Err(Refusal::ConnectionRate);
            }
            addr.open += 1;
            admitted.key = Some(key);
            Ok(())
        })?;
        Ok(admitted)
    }

    /// Runs `f` on the entry of address `key` (seen at `now`), or — the table full of live
    /// addresses — on the one entry every untracked address shares ([`OVERFLOW`]): a flood
    /// of new addresses (an IPv6 attacker has billions of /64s) is held to one address's
    /// limits, never to none. `f` gets the key it counted under.
    fn with_entry<R>(
        &self,
        key: IpAddr,
        now: Instant,
        f: impl FnOnce(&mut Addr, IpAddr) -> R,
    ) -> R {
        let mut f = Some(f);
        {
            let mut shard = self.shard(key);
            if let Some(addr) = self.entry(&mut shard, key, now) {
                addr.seen = now;
                return (f.take().expect("once"))(addr, key);
            }
        }
        let mut shard = self.shard(OVERFLOW);
        let addr = shard
            .addrs
            .entry(OVERFLOW)
            .or_insert_with(|| self.new_addr(now));
        addr.seen = now;
        (f.take().expect("once"))(addr, OVERFLOW)
    }

    fn new_addr(&self, now: Instant) -> Addr {
        let s = self.inner.settings;
        Addr {
            open: 0,
            connects: TokenBucket::full(s.connection_rate_per_addr, now),
            logins: TokenBucket::full(s.login_rate_per_addr, now),
            bad: TokenBucket::full(s.login_rate_per_addr, now),
            seen: now,
        }
    }

    /// One login, resume or renew frame from `client` at `now`, counted once it was checked
    /// (`verified`: its UserSig or ticket verified; otherwise refused by the checks, counted
    /// in a budget of its own): false when over the rate.
    pub fn login_attempt(&self, client: IpAddr, now: Instant, verified: bool) -> bool {
        let rate = self.inner.settings.login_rate_per_addr;
        if rate == 0 {
            return true;
        }
        self.with_entry(limit_key(client), now, |addr, _| {
            if verified {
                addr.logins.take(rate, now)
            } else {
                addr.bad.take(rate, now)
            }
        })
    }

    /// The address's entry, created if there is room (pruning idle ones if needed).
    fn entry<'a>(&self, shard: &'a mut Shard, key: IpAddr, now: Instant) -> Option<&'a mut Addr> {
        if !shard.addrs.contains_key(&key) {
            if shard.addrs.len() >= MAX_PER_SHARD {
                shard
                    .addrs
                    .retain(|_, a| a.open > 0 || now.saturating_duration_since(a.seen) < IDLE);
                if shard.addrs.len() >= MAX_PER_SHARD {
                    tracing::debug!("per-address limits: table full; counted as the overflow");
                    return None;
                }
            }
            shard.addrs.insert(key, self.new_addr(now));
        }
        shard.addrs.get_mut(&key)
    }

    /// Addresses tracked (for tests).
    pub fn tracked(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).addrs.len())
            .sum()
    }

    /// Forgets addresses with nothing open that have been idle a while, and users whose
    /// bucket is full again (the sweeper).
    pub fn sweep(&self, now: Instant) {
        let rate = self.inner.settings.login_rate_per_user;
        for shard in self.inner.users.iter() {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, b| !b.refilled(rate, now));
        }
        for shard in self.inner.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .addrs
                .retain(|_, a| a.open > 0 || now.saturating_duration_since(a.seen) < IDLE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(total: u32, per_addr: u32, rate: u32, logins: u32) -> Limits {
        Limits::new(LimitSettings {
            max_connections: total,
            max_connections_per_addr: per_addr,
            connection_rate_per_addr: rate,
            login_rate_per_addr: logins,
            login_rate_per_user: 0,
            max_refusals_in_flight: 0,
        })
    }

    #[test]
    fn total_and_per_address_caps_free_their_place_on_drop() {
        let l = limits(3, 2, 0, 0);
        let t = Instant::now();
        let a1 = l.admit(ip("192.0.2.1"), t).unwrap();
        let _a2 = l.admit(ip("192.0.2.1"), t).unwrap();
        assert_eq!(
            l.admit(ip("192.0.2.1"), t).err(),
            Some(Refusal::MaxConnectionsPerAddr)
        );
        let _b1 = l.admit(ip("192.0.2.2"), t).unwrap();
        assert_eq!(l.open(), 3);
        assert_eq!(
            l.admit(ip("192.0.2.3"), t).err(),
            Some(Refusal::MaxConnections)
        );
        assert_eq!(l.open(), 3, "refusals hold no place");
        drop(a1);
        assert_eq!(l.open(), 2);
        let _a3 = l.admit(ip("192.0.2.1"), t).unwrap();
    }

    #[test]
    fn rates_refill_over_a_second() {
        let l = limits(0, 0, 5, 3);
        let t = Instant::now();
        let a = ip("2001:db8::1");
        let held: Vec<_> = (0..5).map(|_| l.admit(a, t).unwrap()).collect();
        // The same /64 is the same client.
        assert_eq!(
            l.admit(ip("2001:db8::2"), t).err(),
            Some(Refusal::ConnectionRate)
        );
        let later = l.admit(ip("2001:db8::2"), t + Duration::from_millis(200));
        assert!(later.is_ok());
        assert!((0..3).all(|_| l.login_attempt(a, t, true)));
        assert!(!l.login_attempt(a, t, true));
        assert!(l.login_attempt(a, t + Duration::from_millis(400), true));
        assert!(l.login_attempt(ip("192.0.2.9"), t, true), "another address");
        drop(held);
        l.sweep(t + Duration::from_secs(60));
        assert_eq!(l.tracked(), 1, "one connection still open");
        drop(later);
        l.sweep(t + Duration::from_secs(60));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_full_table_holds_new_addresses_to_one_shared_budget() {
        let l = limits(0, 0, 0, 3);
        let t = Instant::now();
        // Every shard full of live /64s (each just made a login attempt).
        let mut n: u64 = 0;
        while l.tracked() < SHARDS * MAX_PER_SHARD {
            for _ in 0..4096 {
                n += 1;
                let a = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(n) << 64));
                l.login_attempt(a, t, true);
            }
        }
        // New /64s beyond it share one budget (full again a second later, while the table's
        // addresses are still live): not unlimited.
        let later = t + Duration::from_secs(1);
        let fresh = |k: u64| IpAddr::V6(std::net::Ipv6Addr::from(u128::from(n + k) << 64));
        let passed = (1..=100)
            .filter(|k| l.login_attempt(fresh(*k), later, true))
            .count();
        assert_eq!(passed, 3, "one address's burst for all untracked addresses");
    }

    #[test]
    fn zero_means_unlimited() {
        let l = limits(0, 0, 0, 0);
        let t = Instant::now();
        let held: Vec<_> = (0..10_000)
            .map(|_| l.admit(ip("192.0.2.1"), t).unwrap())
            .collect();
        assert!((0..10_000).all(|_| l.login_attempt(ip("192.0.2.1"), t, true)));
        assert_eq!(l.open(), 10_000);
        drop(held);
        assert_eq!(l.open(), 0);
    }
}
