//! The server's resolved configuration and the rules it must satisfy before `timd` starts.
//!
//! `cli.rs` turns flags/env into a [`Config`]; everything that can make a start unsafe or
//! meaningless (no key, demo mode on a public address, zero timeouts) is rejected here, so the
//! same rules hold for the binary and for tests that build a `Config` by hand.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::apps::AppConfig;
use crate::client_addr::TrustedProxies;
use crate::limits::LimitSettings;
use crate::origins::AllowedOrigins;
use crate::policy::LoginSettings;

/// The embedded demo app's SDKAppID. Only usable in `--demo` mode, which is loopback-only.
pub const DEMO_SDKAPPID: u32 = 1_400_000_000;
/// The embedded demo app's secret key. Public on purpose: demo mode hands out UserSigs to
/// anyone who asks, so it must never guard anything real (hence loopback-only).
pub const DEMO_KEY: &str = "timd-demo-key-NOT-SECRET-do-not-use-in-production";

/// Default listen address: loopback, so a bare `timd serve` exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
pub const DEFAULT_ADMIN: &str = "administrator";
pub const DEFAULT_DATA_DIR: &str = "./.data";
pub const DEFAULT_WWW_DIR: &str = "www";
pub const DEFAULT_PKG_DIR: &str = "pkg";
/// 25 s, as Centrifugo pings: below common 30-60 s proxy idle timeouts.
pub const DEFAULT_HEARTBEAT_MS: u32 = 25_000;
pub const DEFAULT_LOGIN_TIMEOUT_MS: u32 = 5_000;
/// How long a disconnected instance keeps its slot, waiting for a resume: long enough for a
/// network switch or a quick laptop sleep, short enough that a closed tab frees its slot soon.
pub const DEFAULT_RESUME_GRACE_MS: u32 = 60_000;
/// REST calls per second per app: Tencent's documented limit for `kick`.
pub const DEFAULT_REST_RATE_LIMIT: u32 = 200;
/// 180 days, the validity Tencent's console suggests for generated UserSigs.
pub const DEFAULT_USERSIG_EXPIRE_SECS: u64 = 15_552_000;

/// Everything `timd serve` needs. Build one with [`Config::demo`] / [`Config::new`] (tests) or
/// from the CLI; call [`Config::validate`] before serving (`serve` does).
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `listen(2)` backlog: connects the kernel queues before timd accepts them
    /// (`listener.rs`). Capped by the kernel's `net.core.somaxconn`.
    pub listen_backlog: u32,
    pub sdkappid: u32,
    /// The app's secret key (HMAC key of its UserSigs). Never logged: `Debug` redacts it.
    pub key: String,
    /// App admin identifiers (for the REST API).
    pub admin: String,
    /// Where `timd.sqlite3` lives; created if absent.
    pub data_dir: PathBuf,
    /// Serve the demo page, the SDK package and `/demo/usersig`.
    pub demo: bool,
    pub www_dir: PathBuf,
    pub pkg_dir: PathBuf,
    /// Announced ping interval; a logged-in socket silent for twice this is dropped.
    pub heartbeat_ms: u32,
    /// How long a socket may stay connected without a successful login.
    pub login_timeout_ms: u32,
    /// Instance limits and the multi-platform policy.
    pub login: LoginSettings,
    /// How long a disconnected instance stays resumable in the registry (its slot held).
    pub resume_grace_ms: u32,
    /// REST calls per second for the app (all APIs together); 0 = unlimited.
    pub rest_rate_limit: u32,
    /// How long a session ticket resumes after it was issued (at most; never beyond the
    /// UserSig). Not a flag: tests shorten it.
    pub ticket_lifetime_secs: u64,
    /// Proxies whose `X-Forwarded-For` names the client (`client_addr.rs`); none by default.
    pub trusted_proxies: TrustedProxies,
    /// Which pages may open `/ws` (`origins.rs`).
    pub allowed_origins: AllowedOrigins,
    /// Connection and login-attempt limits on `/ws` (`limits.rs`).
    pub limits: LimitSettings,
    /// Cluster mode (`--redis`): sessions, accounts and kicks shared through Redis
    /// (`cluster/`). `None`: one process with the embedded store.
    pub cluster: Option<ClusterSettings>,
    /// The apps of `--apps FILE`; empty: the one app of `sdkappid`, `key`, `admin`, `login`
    /// and `rest_rate_limit` (the single-app flags).
    pub apps: Vec<AppConfig>,
    /// The single app's callback (`--callback-url`; the apps file has one per app).
    pub callback: Option<crate::callbacks::CallbackTarget>,
    /// How every app's callbacks are delivered.
    pub callback_settings: crate::callbacks::CallbackSettings,
}

/// Default lease a node holds on each of its sessions in Redis (`cluster/`): a node that dies
/// frees its slots within this. Renewed every third of it.
pub const DEFAULT_LEASE_MS: u32 = 30_000;

/// How a node joins a cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://[user:password@]host:port[/db]`. Never logged whole: it may hold a password.
    pub redis_url: String,
    /// The lease (`--lease-ms`): a dead node's slots are free within it. Each node renews
    /// its own hold (one lease for all its sessions) every sixth of it.
    pub lease_ms: u32,
    /// Start even if Redis may evict keys (`maxmemory-policy` other than `noeviction`):
    /// evicted tombstones and kick times undo logouts and revocations (`--allow-redis-eviction`).
    pub allow_eviction: bool,
    /// Replicas that must have a promise-keeping write (a REST kick, an account change, a
    /// logout, a settings change) before it is acknowledged (`WAIT`), so a failover cannot
    /// undo it (`--redis-wait-replicas`). `None`: 1 behind Sentinel, 0 otherwise.
    pub wait_replicas: Option<u32>,
}

impl ClusterSettings {
    pub fn new(redis_url: impl Into<String>) -> ClusterSettings {
        ClusterSettings {
            redis_url: redis_url.into(),
            lease_ms: DEFAULT_LEASE_MS,
            allow_eviction: false,
            wait_replicas: None,
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.into())
    }

    /// How often a node renews its node lease and refreshes its view of the live nodes
    /// (the node round): a sixth of the lease.
    pub fn renew_every(&self) -> Duration {
        self.lease() / 6
    }

    /// The node lease: how long a node's hold on its sessions lasts after a renewal (the
    /// lease minus one round, so that with views at most a round old, a dead node's slots
    /// are free within [`Self::lease`]). A node that could not renew within nine tenths of
    /// it fences itself: four rounds may fail first.
    pub fn node_lease(&self) -> Duration {
        self.lease() - self.renew_every()
    }

    /// The URL with any credentials (before its last `@`, with or without a scheme) and any
    /// query (`?password=`...) replaced, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redacted_url(&self.redis_url)
    }
}

/// `url` with its credentials and query replaced (see [`ClusterSettings::redacted_url`]).
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let rest = match rest.rfind('@') {
        Some(at) => format!("<redacted>@{}", &rest[at + 1..]),
        None => rest.to_owned(),
    };
    match rest.find('?') {
        Some(q) => format!("{scheme}{}?<redacted>", &rest[..q]),
        None => format!("{scheme}{rest}"),
    }
}

/// Whether a Redis URL carries credentials (a password in it, visible in `ps` when given on
/// the command line).
pub fn has_credentials(url: &str) -> bool {
    redacted_url(url) != url
}

impl fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("redis_url", &self.redacted_url())
            .field("lease_ms", &self.lease_ms)
            .field("wait_replicas", &self.wait_replicas)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("listen_backlog", &self.listen_backlog)
            .field("sdkappid", &self.sdkappid)
            .field("key", &"<redacted>")
            .field("admin", &self.admin)
            .field("data_dir", &self.data_dir)
            .field("demo", &self.demo)
            .field("www_dir", &self.www_dir)
            .field("pkg_dir", &self.pkg_dir)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("login_timeout_ms", &self.login_timeout_ms)
            .field("login", &self.login)
            .field("resume_grace_ms", &self.resume_grace_ms)
            .field("rest_rate_limit", &self.rest_rate_limit)
            .field("ticket_lifetime_secs", &self.ticket_lifetime_secs)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("allowed_origins", &self.allowed_origins)
            .field("limits", &self.limits)
            .field("cluster", &self.cluster)
            .field("apps", &self.apps)
            .field("callback", &self.callback)
            .field("callback_settings", &self.callback_settings)
            .finish()
    }
}

/// Why a configuration cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--sdkappid is required outside demo mode (or set TIMD_SDKAPPID)")]
    MissingSdkAppId,
    #[error("the app key is required outside demo mode: TIMD_KEY, --key-file PATH or --key")]
    MissingKey,
    #[error("give the app key once: --key / TIMD_KEY or --key-file / TIMD_KEY_FILE")]
    KeyTwice,
    #[error("cannot read the key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("--sdkappid must be a positive integer")]
    ZeroSdkAppId,
    #[error("--key must not be empty")]
    EmptyKey,
    #[error(
        "demo mode hands out UserSigs to anyone and refuses to listen on {0}: \
         use a loopback address such as 127.0.0.1:9000"
    )]
    DemoNotLoopback(SocketAddr),
    #[error("--listen-backlog must be between 1 and 2147483647")]
    BadListenBacklog,
    #[error("--admin {0:?} is not a valid UserID (1..32 of A-Z a-z 0-9 _ -)")]
    BadAdmin(String),
    #[error("--user {0:?} is not a valid UserID (1..32 of A-Z a-z 0-9 _ -)")]
    BadUser(String),
    #[error("--heartbeat-ms must be between 10 and 3600000")]
    BadHeartbeat,
    #[error("--login-timeout-ms must be between 1 and 600000")]
    BadLoginTimeout,
    #[error("--expire must be at least 1 second")]
    BadExpire,
    #[error("{0}")]
    BadLoginSettings(String),
    #[error("--resume-grace-ms must be between 0 and 86400000")]
    BadResumeGrace,
    #[error("the ticket lifetime must be between 1 and 86400 seconds")]
    BadTicketLifetime,
    #[error(
        "--redis must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL, got {0:?}"
    )]
    BadRedisUrl(String),
    #[error("--redis {0:?}: {1}")]
    BadTopologyUrl(String, String),
    #[error("--lease-ms must be between 300 and 600000")]
    BadLease,
    #[error(transparent)]
    AppsFile(#[from] crate::apps_file::AppsFileError),
    #[error("app {0}: an app needs an SDKAppID, a key and 1 to 10 admins")]
    BadApp(u32),
    #[error("--apps names every app: do not also give --sdkappid, --key or --key-file")]
    AppsAndSingleApp,
    #[error("{0}")]
    BadCallback(String),
}

impl Config {
    /// A demo-mode configuration with every default (the embedded demo app, loopback).
    pub fn demo() -> Config {
        Config {
            demo: true,
            ..Config::new(DEMO_SDKAPPID, DEMO_KEY)
        }
    }

    /// A production-mode configuration for one app, with defaults for everything else.
    pub fn new(sdkappid: u32, key: impl Into<String>) -> Config {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            listen_backlog: crate::listener::DEFAULT_LISTEN_BACKLOG,
            sdkappid,
            key: key.into(),
            admin: DEFAULT_ADMIN.into(),
            data_dir: DEFAULT_DATA_DIR.into(),
            demo: false,
            www_dir: DEFAULT_WWW_DIR.into(),
            pkg_dir: DEFAULT_PKG_DIR.into(),
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            login_timeout_ms: DEFAULT_LOGIN_TIMEOUT_MS,
            login: LoginSettings::default(),
            resume_grace_ms: DEFAULT_RESUME_GRACE_MS,
            rest_rate_limit: DEFAULT_REST_RATE_LIMIT,
            ticket_lifetime_secs: crate::ticket::TICKET_LIFETIME_SECS,
            trusted_proxies: TrustedProxies::default(),
            allowed_origins: AllowedOrigins::default(),
            limits: LimitSettings::default(),
            cluster: None,
            apps: Vec::new(),
            callback: None,
            callback_settings: crate::callbacks::CallbackSettings::default(),
        }
    }

    /// The apps served: those of the apps file, or the one app of the single-app flags.
    pub fn app_configs(&self) -> Vec<AppConfig> {
        if !self.apps.is_empty() {
            return self.apps.clone();
        }
        vec![AppConfig {
            sdkappid: self.sdkappid,
            key: self.key.clone(),
            admins: vec![self.admin.clone()],
            login: self.login,
            rest_rate_limit: self.rest_rate_limit,
            callback: self.callback.clone(),
        }]
    }

    /// Where the apps' first login settings come from (for the logs and the history).
    pub fn settings_origin(&self) -> &'static str {
        if self.apps.is_empty() {
            "(flags)"
        } else {
            "(apps file)"
        }
    }

    /// The first app's key: demo mode hands out UserSigs only for the public demo key.
    pub fn default_key(&self) -> String {
        self.app_configs().swap_remove(0).key
    }

    /// Rejects configurations that must not start. Demo mode on a non-loopback address is the
    /// important one: its `/demo/usersig` endpoint would let anyone log in as anyone.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.apps.is_empty() {
            if self.sdkappid == 0 {
                return Err(ConfigError::ZeroSdkAppId);
            }
            if self.key.is_empty() {
                return Err(ConfigError::EmptyKey);
            }
        }
        for app in &self.apps {
            if app.sdkappid == 0 || app.key.is_empty() || app.admins.is_empty() {
                return Err(ConfigError::BadApp(app.sdkappid));
            }
            app.login
                .validate()
                .map_err(ConfigError::BadLoginSettings)?;
            if let Some(bad) = app.admins.iter().find(|a| !tim_proto::is_valid_user_id(a)) {
                return Err(ConfigError::BadAdmin(bad.clone()));
            }
        }
        if self.demo && !self.listen.ip().is_loopback() {
            return Err(ConfigError::DemoNotLoopback(self.listen));
        }
        if !(1..=i32::MAX as u32).contains(&self.listen_backlog) {
            return Err(ConfigError::BadListenBacklog);
        }
        if !tim_proto::is_valid_user_id(&self.admin) {
            return Err(ConfigError::BadAdmin(self.admin.clone()));
        }
        if !(10..=3_600_000).contains(&self.heartbeat_ms) {
            return Err(ConfigError::BadHeartbeat);
        }
        if !(1..=600_000).contains(&self.login_timeout_ms) {
            return Err(ConfigError::BadLoginTimeout);
        }
        self.login
            .validate()
            .map_err(ConfigError::BadLoginSettings)?;
        if self.resume_grace_ms > 86_400_000 {
            return Err(ConfigError::BadResumeGrace);
        }
        if let Some(cluster) = &self.cluster {
            let url = &cluster.redis_url;
            if url.starts_with("redis+sentinel://") || url.starts_with("redis+cluster://") {
                crate::cluster::primary::Target::parse(url)
                    .map_err(|why| ConfigError::BadTopologyUrl(cluster.redacted_url(), why))?;
            } else if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::BadRedisUrl(cluster.redacted_url()));
            }
            if !(300..=600_000).contains(&cluster.lease_ms) {
                return Err(ConfigError::BadLease);
            }
        }
        for app in self.app_configs() {
            if let Some(target) = &app.callback {
                target.validate().map_err(ConfigError::BadCallback)?;
            }
        }
        self.callback_settings
            .validate()
            .map_err(ConfigError::BadCallback)?;
        // Ended sessions are remembered for the longest lifetime; never beyond it.
        if !(1..=crate::ticket::TICKET_LIFETIME_SECS).contains(&self.ticket_lifetime_secs) {
            return Err(ConfigError::BadTicketLifetime);
        }
        Ok(())
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.into())
    }

    /// A logged-in socket silent this long is dead: two missed heartbeats.
    pub fn idle_timeout(&self) -> Duration {
        2 * self.heartbeat()
    }

    pub fn resume_grace(&self) -> Duration {
        Duration::from_millis(self.resume_grace_ms.into())
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_millis(self.login_timeout_ms.into())
    }

    /// The SQLite file of the embedded store.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(crate::store::DATABASE_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_defaults_are_valid_and_loopback_only() {
        let mut c = Config::demo();
        assert_eq!(c.sdkappid, DEMO_SDKAPPID);
        assert_eq!(c.key, DEMO_KEY);
        assert_eq!(c.validate(), Ok(()));
        c.listen = "[::1]:9000".parse().unwrap();
        assert_eq!(c.validate(), Ok(()));
        c.listen = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(c.validate(), Err(ConfigError::DemoNotLoopback(c.listen)));
        c.listen = "192.0.2.1:9000".parse().unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::DemoNotLoopback(_))));
        // The same address is fine outside demo mode.
        c.demo = false;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn rejects_unusable_values() {
        let ok = Config::new(1, "k");
        assert_eq!(ok.validate(), Ok(()));
        let c = Config {
            sdkappid: 0,
            ..ok.clone()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroSdkAppId));
        let c = Config {
            key: String::new(),
            ..ok.clone()
        };
        assert_eq!(c.validate(), Err(ConfigError::EmptyKey));
        let c = Config {
            admin: "a b".into(),
            ..ok.clone()
        };
        assert!(matches!(c.validate(), Err(ConfigError::BadAdmin(_))));
        let c = Config {
            heartbeat_ms: 0,
            ..ok.clone()
        };
        assert_eq!(c.validate(), Err(ConfigError::BadHeartbeat));
        let c = Config {
            listen_backlog: 0,
            ..ok.clone()
        };
        assert_eq!(c.validate(), Err(ConfigError::BadListenBacklog));
        let c = Config {
            login_timeout_ms: 0,
            ..ok
        };
        assert_eq!(c.validate(), Err(ConfigError::BadLoginTimeout));
    }

    #[test]
    fn redacted_urls_never_show_a_password() {
        for (url, shown) in [
            ("redis://:s3cret@h:6379/0", "redis://<redacted>@h:6379/0"),
            ("redis://u:s3cret@h", "redis://<redacted>@h"),
            ("u:s3cret@h:6379", "<redacted>@h:6379"),
            ("redis:s3cret@h", "<redacted>@h"),
            (
                "redis://h:6379/0?password=s3cret",
                "redis://h:6379/0?<redacted>",
            ),
            ("redis://a@b:s3cret@h", "redis://<redacted>@h"),
            ("redis://h:6379", "redis://h:6379"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
            assert!(!ClusterSettings::new(url).redacted_url().contains("s3cret"));
            assert!(!format!("{:?}", ClusterSettings::new(url)).contains("s3cret"));
            assert_eq!(has_credentials(url), url != "redis://h:6379");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = Config::new(7, "super-secret-key");
        let text = format!("{c:?}");
        assert!(!text.contains("super-secret-key"), "{text}");
        assert!(text.contains("redacted"));
    }
}
