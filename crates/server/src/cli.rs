//! The `timd serve` and `timd usersig` arguments. Every `serve` flag has a `TIMD_*`
//! environment twin so containers and CI can configure it without a shell wrapper. The
//! top-level command line (with `timd client`) lives in the `timd-bin` crate, so this
//! library does not depend on the client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::builder::FalseyValueParser;
use clap::Args;

use crate::client_addr::TrustedProxies;
use crate::config::{
    ClusterSettings, Config, ConfigError, DEFAULT_ADMIN, DEFAULT_DATA_DIR, DEFAULT_HEARTBEAT_MS,
    DEFAULT_LEASE_MS, DEFAULT_LISTEN, DEFAULT_LOGIN_TIMEOUT_MS, DEFAULT_PKG_DIR,
    DEFAULT_REST_RATE_LIMIT, DEFAULT_RESUME_GRACE_MS, DEFAULT_USERSIG_EXPIRE_SECS, DEFAULT_WWW_DIR,
    DEMO_KEY, DEMO_SDKAPPID,
};
use crate::limits::{
    LimitSettings, DEFAULT_CONNECTION_RATE_PER_ADDR, DEFAULT_LOGIN_RATE_PER_ADDR,
    DEFAULT_LOGIN_RATE_PER_USER, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDR,
    DEFAULT_MAX_REFUSALS_IN_FLIGHT,
};
use crate::listener::DEFAULT_LISTEN_BACKLOG;
use crate::origins::AllowedOrigins;
use crate::policy::{LoginPolicy, LoginSettings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TIMD_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Connects the kernel queues before timd accepts them (listen(2) backlog), sized for
    /// every client of a restarted node reconnecting at once; capped by net.core.somaxconn.
    #[arg(long, env = "TIMD_LISTEN_BACKLOG", default_value_t = DEFAULT_LISTEN_BACKLOG)]
    pub listen_backlog: u32,
    /// The apps file: one [[app]] table per app served (sdkappid, key_file or key_env,
    /// admins, first login settings, rest_rate_limit). Replaces --sdkappid / --key / --admin
    /// and the login settings flags.
    #[arg(long, env = "TIMD_APPS", value_name = "FILE")]
    pub apps: Option<PathBuf>,
    /// The app's SDKAppID (required outside --demo).
    #[arg(long, env = "TIMD_SDKAPPID")]
    pub sdkappid: Option<u32>,
    /// The app's secret key (required outside --demo).
    #[command(flatten)]
    pub key: KeyArgs,
    /// The app admin's UserID (REST API).
    #[arg(long, env = "TIMD_ADMIN", default_value = DEFAULT_ADMIN)]
    pub admin: String,
    /// Directory of the embedded store (created if absent).
    #[arg(long, env = "TIMD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Demo mode: embedded demo app, /demo/usersig, static www/ and pkg/. Loopback only.
    #[arg(long, env = "TIMD_DEMO", value_parser = FalseyValueParser::new())]
    pub demo: bool,
    /// Demo page directory, served at / in demo mode.
    #[arg(long, env = "TIMD_WWW_DIR", default_value = DEFAULT_WWW_DIR)]
    pub www_dir: PathBuf,
    /// SDK package directory (wasm-pack output), served at /pkg/ in demo mode.
    #[arg(long, env = "TIMD_PKG_DIR", default_value = DEFAULT_PKG_DIR)]
    pub pkg_dir: PathBuf,
    /// Ping interval announced to clients; sockets silent for twice this are dropped.
    #[arg(long, env = "TIMD_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS)]
    pub heartbeat_ms: u32,
    /// Sockets that have not logged in within this are closed.
    #[arg(long, env = "TIMD_LOGIN_TIMEOUT_MS", default_value_t = DEFAULT_LOGIN_TIMEOUT_MS)]
    pub login_timeout_ms: u32,
    /// Online Web instances per user (1..10); over it the earliest is kicked (multipleAccount).
    #[arg(long, env = "TIMD_WEB_INSTANCES", default_value_t = 1)]
    pub web_instances: u8,
    /// Instances per user on each of Android, iPhone, iPad, Windows, Mac (1..3).
    #[arg(long, env = "TIMD_PLATFORM_INSTANCES", default_value_t = 1)]
    pub platform_instances: u8,
    /// Multi-platform policy: single (one platform), dual (one mobile-or-desktop + Web),
    /// triple (one mobile + one desktop + Web), all.
    #[arg(long, env = "TIMD_LOGIN_POLICY", default_value = "dual")]
    pub login_policy: LoginPolicy,
    /// How long a disconnected instance keeps its slot, resumable with its ticket.
    #[arg(long, env = "TIMD_RESUME_GRACE_MS", default_value_t = DEFAULT_RESUME_GRACE_MS)]
    pub resume_grace_ms: u32,
    /// REST API calls per second for the app, all APIs together (0 = unlimited).
    #[arg(long, env = "TIMD_REST_RATE_LIMIT", default_value_t = DEFAULT_REST_RATE_LIMIT)]
    pub rest_rate_limit: u32,
    /// Pages allowed to open /ws: comma-separated http(s)://host[:port], or * for any.
    /// Default: the server's own origin (and loopback pages in demo mode). Requests without
    /// an Origin header (native clients) are always allowed.
    #[arg(long, env = "TIMD_ALLOWED_ORIGINS", value_name = "LIST", value_parser = AllowedOrigins::parse)]
    pub allowed_origins: Option<AllowedOrigins>,
    /// Proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the
    /// client; without it the header is ignored.
    #[arg(long, env = "TIMD_TRUSTED_PROXIES", value_name = "LIST", value_parser = TrustedProxies::parse)]
    pub trusted_proxies: Option<TrustedProxies>,
    /// Open /ws connections at most, in total (0 = unlimited); beyond it close 4007.
    #[arg(long, env = "TIMD_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: u32,
    /// Open /ws connections at most per client address (IPv4, or IPv6 /64; 0 = unlimited);
    /// beyond it close 4008.
    #[arg(long, env = "TIMD_MAX_CONNECTIONS_PER_ADDR", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_ADDR)]
    pub max_connections_per_addr: u32,
    /// New /ws connections per second per client address (0 = unlimited); beyond it 4009.
    #[arg(long, env = "TIMD_CONNECTION_RATE_PER_ADDR", default_value_t = DEFAULT_CONNECTION_RATE_PER_ADDR)]
    pub connection_rate_per_addr: u32,
    /// Login, resume and renew frames per second per client address (0 = unlimited);
    /// beyond it 70050 and close 4010.
    #[arg(long, env = "TIMD_LOGIN_RATE_PER_ADDR", default_value_t = DEFAULT_LOGIN_RATE_PER_ADDR)]
    pub login_rate_per_addr: u32,
    /// Verified login, resume and renew frames per second per user on this node (0 =
    /// unlimited); beyond it 70050 (a resume: close 4010). Keeps one user from filling the
    /// store for everyone.
    #[arg(long, env = "TIMD_LOGIN_RATE_PER_USER", default_value_t = DEFAULT_LOGIN_RATE_PER_USER)]
    pub login_rate_per_user: u32,
    /// Cluster mode: share sessions, accounts and kicks with every node on this Redis
    /// (redis://[user:password@]host:port[/db], or the primary Sentinel names:
    /// redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/db], or a Redis
    /// Cluster: redis+cluster://[user:password@]host:port[,host:port...]). Without it timd
    /// runs alone on its embedded store.
    #[arg(long, env = "TIMD_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// Cluster mode: start even though Redis's `maxmemory-policy` is not `noeviction`. An
    /// evicted tombstone or kick time silently brings back logged-out or revoked sessions;
    /// only for a Redis whose memory cannot fill up.
    #[arg(long, env = "TIMD_ALLOW_REDIS_EVICTION")]
    pub allow_redis_eviction: bool,
    /// Cluster mode: a node that dies frees its sessions' slots within this. Each node renews
    /// one lease for all its sessions every sixth of it, and fences itself (closes its
    /// sessions so their clients resume) if it could not renew for three quarters of it.
    #[arg(long, env = "TIMD_LEASE_MS", default_value_t = DEFAULT_LEASE_MS)]
    pub lease_ms: u32,
    /// Cluster mode: replicas that must have a REST kick, an account change, a logout or a
    /// settings change before it is acknowledged (Redis WAIT), so a failover cannot undo it
    /// (default: 1 behind Sentinel or on a Redis Cluster, 0 otherwise; 0 = do not wait).
    #[arg(long, env = "TIMD_REDIS_WAIT_REPLICAS", value_name = "N")]
    pub redis_wait_replicas: Option<u32>,
    /// The app server's State.StateChange callback URL (http://...): every login, logout,
    /// disconnect and kick is POSTed there as Tencent does (docs/callbacks.md). With --apps,
    /// each app's `callback_url` instead.
    #[arg(long, env = "TIMD_CALLBACK_URL", value_name = "URL")]
    pub callback_url: Option<String>,
    /// The callback authentication token (the request's Sign), from this file (one line).
    #[arg(long, env = "TIMD_CALLBACK_TOKEN_FILE", value_name = "PATH")]
    pub callback_token_file: Option<PathBuf>,
    /// The callback authentication token itself (prefer the file: the environment and the
    /// command line are visible to other processes).
    #[arg(
        long = "callback-token",
        env = "TIMD_CALLBACK_TOKEN",
        hide_env_values = true
    )]
    pub callback_token: Option<String>,
    /// How long a callback receiver has to answer one request before it is retried.
    #[arg(long, env = "TIMD_CALLBACK_TIMEOUT_MS", default_value_t = crate::callbacks::DEFAULT_TIMEOUT_MS)]
    pub callback_timeout_ms: u32,
    /// Callback requests in flight per app at most.
    #[arg(long, env = "TIMD_CALLBACK_MAX_IN_FLIGHT", default_value_t = crate::callbacks::DEFAULT_MAX_IN_FLIGHT)]
    pub callback_max_in_flight: u32,
    /// Callback events waiting per app at most; beyond it the oldest are dropped (counted
    /// in timd_callbacks_dropped, logged): logins never wait for a receiver.
    #[arg(long, env = "TIMD_CALLBACK_QUEUE_CAP", default_value_t = crate::callbacks::DEFAULT_QUEUE_CAP)]
    pub callback_queue_cap: u32,
}

impl ServeArgs {
    /// Resolves the demo defaults and the required flags, then validates.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let key = self.key.resolve()?;
        let apps = match &self.apps {
            Some(path) => {
                if self.sdkappid.is_some() || key.is_some() {
                    return Err(ConfigError::AppsAndSingleApp);
                }
                crate::apps_file::load(path)?
            }
            None => Vec::new(),
        };
        let token = resolve_key(
            self.callback_token.clone(),
            self.callback_token_file.as_deref(),
        )
        .map_err(|e| ConfigError::BadCallback(format!("callback token: {e}")))?;
        let callback = match (&self.callback_url, token) {
            (Some(_), _) if !apps.is_empty() => {
                return Err(ConfigError::BadCallback(
                    "--apps names every app's callback (callback_url): do not also give \
                     --callback-url"
                        .into(),
                ))
            }
            (Some(url), token) => Some(crate::callbacks::CallbackTarget {
                url: url.clone(),
                token,
            }),
            (None, Some(_)) if apps.is_empty() => {
                return Err(ConfigError::BadCallback(
                    "a callback token without --callback-url".into(),
                ))
            }
            (None, _) => None,
        };
        let (sdkappid, key) = match (self.sdkappid, key, self.demo) {
            _ if !apps.is_empty() => (apps[0].sdkappid, apps[0].key.clone()),
            (Some(id), Some(key), _) => (id, key),
            (id, key, true) => (
                id.unwrap_or(DEMO_SDKAPPID),
                key.unwrap_or_else(|| DEMO_KEY.to_owned()),
            ),
            (None, _, false) => return Err(ConfigError::MissingSdkAppId),
            (Some(_), None, false) => return Err(ConfigError::MissingKey),
        };
        let config = Config {
            listen: self.listen,
            listen_backlog: self.listen_backlog,
            sdkappid,
            key,
            admin: self.admin,
            data_dir: self.data_dir,
            demo: self.demo,
            www_dir: self.www_dir,
            pkg_dir: self.pkg_dir,
            heartbeat_ms: self.heartbeat_ms,
            login_timeout_ms: self.login_timeout_ms,
            login: LoginSettings {
                web_instances: self.web_instances,
                platform_instances: self.platform_instances,
                policy: self.login_policy,
            },
            resume_grace_ms: self.resume_grace_ms,
            rest_rate_limit: self.rest_rate_limit,
            ticket_lifetime_secs: crate::ticket::TICKET_LIFETIME_SECS,
            trusted_proxies: self.trusted_proxies.unwrap_or_default(),
            allowed_origins: self.allowed_origins.unwrap_or_default(),
            limits: LimitSettings {
                max_connections: self.max_connections,
                max_connections_per_addr: self.max_connections_per_addr,
                connection_rate_per_addr: self.connection_rate_per_addr,
                login_rate_per_addr: self.login_rate_per_addr,
                login_rate_per_user: self.login_rate_per_user,
                max_refusals_in_flight: DEFAULT_MAX_REFUSALS_IN_FLIGHT,
            },
            cluster: self.redis.map(|redis_url| ClusterSettings {
                redis_url,
                lease_ms: self.lease_ms,
                allow_eviction: self.allow_redis_eviction,
                wait_replicas: self.redis_wait_replicas,
            }),
            apps,
            callback,
            callback_settings: crate::callbacks::CallbackSettings {
                timeout_ms: self.callback_timeout_ms,
                max_in_flight: self.callback_max_in_flight,
                queue_cap: self.callback_queue_cap,
            },
        };
        config.validate()?;
        Ok(config)
    }
}

/// The app's secret key, for `serve` and `usersig` alike.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// The app's secret key. Prefer TIMD_KEY or --key-file: a key on the command line is
    /// visible to every user of the machine (ps).
    #[arg(
        long,
        env = "TIMD_KEY",
        hide_env_values = true,
        conflicts_with = "key_file"
    )]
    pub key: Option<String>,
    /// A file holding the app's secret key (one line; a trailing newline is ignored).
    #[arg(long, env = "TIMD_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The key given, if any (see [`resolve_key`]).
    pub fn resolve(&self) -> Result<Option<String>, ConfigError> {
        resolve_key(self.key.clone(), self.key_file.as_deref())
    }
}

/// The key from `--key` / `TIMD_KEY`, or read from `--key-file` / `TIMD_KEY_FILE`.
pub fn resolve_key(
    key: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    let Some(path) = file else {
        return Ok(key);
    };
    if key.is_some() {
        return Err(ConfigError::KeyTwice);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::KeyFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let key = text.strip_suffix('\n').unwrap_or(&text);
    let key = key.strip_suffix('\r').unwrap_or(key);
    if key.contains('\n') {
        return Err(ConfigError::KeyFile {
            path: path.to_owned(),
            message: "it holds more than one line".into(),
        });
    }
    Ok(Some(key.to_owned()))
}

/// Whether `--redis` was given on the command line with credentials in it (visible in `ps`).
pub fn redis_password_on_command_line(args: impl IntoIterator<Item = String>) -> bool {
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let url = match a.strip_prefix("--redis=") {
            Some(url) => Some(url.to_owned()),
            None if a == "--redis" => args.next(),
            None => None,
        };
        if url.is_some_and(|u| crate::config::has_credentials(&u)) {
            return true;
        }
    }
    false
}

/// Whether the key was given as a command-line argument (visible in `ps`).
pub fn key_on_command_line(args: impl IntoIterator<Item = String>) -> bool {
    args.into_iter()
        .any(|a| a == "--key" || a.starts_with("--key="))
}

#[derive(Debug, Args)]
pub struct UsersigArgs {
    #[arg(long, env = "TIMD_SDKAPPID")]
    pub sdkappid: u32,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The UserID the UserSig is for.
    #[arg(long)]
    pub user: String,
    /// Validity in seconds.
    #[arg(long, default_value_t = DEFAULT_USERSIG_EXPIRE_SECS)]
    pub expire: u64,
}

impl UsersigArgs {
    /// The UserSig for these arguments, issued at `now` (unix seconds).
    pub fn generate(&self, now: u64) -> Result<String, ConfigError> {
        if self.sdkappid == 0 {
            return Err(ConfigError::ZeroSdkAppId);
        }
        let key = self.key.resolve()?.ok_or(ConfigError::MissingKey)?;
        if key.is_empty() {
            return Err(ConfigError::EmptyKey);
        }
        if !tim_proto::is_valid_user_id(&self.user) {
            return Err(ConfigError::BadUser(self.user.clone()));
        }
        if self.expire == 0 {
            return Err(ConfigError::BadExpire);
        }
        Ok(tim_usersig::generate(
            self.sdkappid,
            &key,
            &self.user,
            now,
            self.expire,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `timd serve` / `timd usersig` as the binary's command line parses them.
    #[derive(Debug, Parser)]
    struct Sub<A: Args> {
        #[command(flatten)]
        args: A,
    }

    fn serve(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("timd serve").chain(args.iter().copied());
        let sub = Sub::<ServeArgs>::try_parse_from(argv).map_err(|e| e.to_string())?;
        sub.args.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn serve_needs_key_and_sdkappid_outside_demo() {
        let err = serve(&["--sdkappid", "1400000001"]).unwrap_err();
        assert!(err.contains("the app key is required"), "{err}");
        let err = serve(&["--key", "k"]).unwrap_err();
        assert!(err.contains("--sdkappid is required"), "{err}");
        let c = serve(&["--sdkappid", "1400000001", "--key", "k"]).unwrap();
        assert_eq!(
            (c.sdkappid, c.key.as_str(), c.demo),
            (1400000001, "k", false)
        );
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.admin, "administrator");
        assert_eq!(c.heartbeat_ms, 25_000);
        assert_eq!(c.login_timeout_ms, 5_000);
        assert_eq!(c.listen_backlog, 65_535);
        let c = serve(&["--sdkappid", "1", "--key", "k", "--listen-backlog", "4096"]).unwrap();
        assert_eq!(c.listen_backlog, 4096);
        let err = serve(&["--sdkappid", "1", "--key", "k", "--listen-backlog", "0"]).unwrap_err();
        assert!(err.contains("--listen-backlog must be"), "{err}");
        let err = serve(&["--sdkappid", "0", "--key", "k"]).unwrap_err();
        assert!(err.contains("positive"), "{err}");
    }

    #[test]
    fn the_key_comes_from_a_file_or_the_environment_not_only_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "file-secret\n").unwrap();
        let path = file.to_str().unwrap();
        let c = serve(&["--sdkappid", "1400000001", "--key-file", path]).unwrap();
        assert_eq!(
            c.key, "file-secret",
            "the trailing newline is not part of the key"
        );
        std::fs::write(&file, "crlf-secret\r\n").unwrap();
        let c = serve(&["--sdkappid", "1400000001", "--key-file", path]).unwrap();
        assert_eq!(c.key, "crlf-secret");
        let err = serve(&["--sdkappid", "1", "--key", "k", "--key-file", path]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = serve(&["--sdkappid", "1", "--key-file", "/nonexistent/key"]).unwrap_err();
        assert!(err.contains("cannot read the key file"), "{err}");
        std::fs::write(&file, "two\nlines\n").unwrap();
        let err = serve(&["--sdkappid", "1", "--key-file", path]).unwrap_err();
        assert!(err.contains("more than one line"), "{err}");
        assert_eq!(
            resolve_key(Some("k".into()), Some(&file)),
            Err(ConfigError::KeyTwice)
        );
        assert!(key_on_command_line(["timd".into(), "--key=x".into()]));
        assert!(key_on_command_line([
            "timd".into(),
            "--key".into(),
            "x".into()
        ]));
        assert!(!key_on_command_line([
            "timd".into(),
            "--key-file".into(),
            "p".into()
        ]));
    }

    #[test]
    fn abuse_limit_flags_reach_the_config() {
        let c = serve(&["--sdkappid", "1", "--key", "k"]).unwrap();
        assert_eq!(c.limits, LimitSettings::default());
        assert_eq!(c.allowed_origins, AllowedOrigins::SameOrigin);
        assert!(c.trusted_proxies.is_empty());
        let c = serve(&[
            "--sdkappid",
            "1",
            "--key",
            "k",
            "--allowed-origins",
            "https://app.example,http://localhost:8080",
            "--trusted-proxies",
            "10.0.0.0/8",
            "--max-connections",
            "5",
            "--max-connections-per-addr",
            "0",
            "--connection-rate-per-addr",
            "7",
            "--login-rate-per-addr",
            "8",
        ])
        .unwrap();
        assert_eq!(
            c.limits,
            LimitSettings {
                max_connections: 5,
                max_connections_per_addr: 0,
                connection_rate_per_addr: 7,
                login_rate_per_addr: 8,
                login_rate_per_user: DEFAULT_LOGIN_RATE_PER_USER,
                max_refusals_in_flight: DEFAULT_MAX_REFUSALS_IN_FLIGHT,
            }
        );
        assert!(matches!(c.allowed_origins, AllowedOrigins::List(ref l) if l.len() == 2));
        assert_eq!(c.trusted_proxies.0.len(), 1);
        let c = serve(&["--sdkappid", "1", "--key", "k", "--allowed-origins", "*"]).unwrap();
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        let err =
            serve(&["--sdkappid", "1", "--key", "k", "--allowed-origins", "evil"]).unwrap_err();
        assert!(err.contains("http(s)://host"), "{err}");
        let err = serve(&["--sdkappid", "1", "--key", "k", "--trusted-proxies", "x"]).unwrap_err();
        assert!(err.contains("not an IP address"), "{err}");
    }

    #[test]
    fn demo_defaults_to_the_embedded_app_and_refuses_public_addresses() {
        let c = serve(&["--demo"]).unwrap();
        assert_eq!((c.sdkappid, c.key.as_str()), (DEMO_SDKAPPID, DEMO_KEY));
        let err = serve(&["--demo", "--listen", "0.0.0.0:9000"]).unwrap_err();
        assert!(err.contains("refuses to listen on 0.0.0.0:9000"), "{err}");
    }

    #[test]
    fn usersig_command_generates_a_verifiable_usersig() {
        let args = Sub::<UsersigArgs>::try_parse_from([
            "timd usersig",
            "--sdkappid",
            "1400000001",
            "--key",
            "k",
            "--user",
            "alice",
        ])
        .unwrap()
        .args;
        assert_eq!(args.expire, 15_552_000);
        let sig = args.generate(1_700_000_000).unwrap();
        let claims = tim_usersig::verify(&sig, "k", 1400000001, "alice", 1_700_000_001).unwrap();
        assert_eq!((claims.time, claims.expire), (1_700_000_000, 15_552_000));

        let bad = UsersigArgs {
            user: "no spaces".into(),
            ..args
        };
        let no_key = UsersigArgs {
            key: KeyArgs {
                key: None,
                key_file: None,
            },
            sdkappid: 1,
            user: "a".into(),
            expire: 1,
        };
        assert_eq!(no_key.generate(0), Err(ConfigError::MissingKey));
        assert_eq!(
            bad.generate(0),
            Err(ConfigError::BadUser("no spaces".into()))
        );
        let bad = UsersigArgs {
            user: "a".into(),
            sdkappid: 0,
            ..bad
        };
        assert_eq!(bad.generate(0), Err(ConfigError::ZeroSdkAppId));
    }
}
