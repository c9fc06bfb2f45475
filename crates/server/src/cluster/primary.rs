//! Where this node's Redis primary is, and the connections to it: one address
//! (`redis://`), or the primary Redis Sentinel names (`redis+sentinel://`), followed through a
//! failover. Callers take a connection for each call ([`Primary::con`]) and report what failed
//! ([`Primary::failed`]): with Sentinel a failure that says "not the primary any more" (refused,
//! cut, timed out, `READONLY`, `LOADING`, `MASTERDOWN`) makes the node ask the Sentinels and move
//! its connections to the primary they name.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// How long one Sentinel may take to answer where the primary is.
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);
/// At most one lookup this often: a failover fails every call for a while.
const LOOKUP_EVERY: Duration = Duration::from_millis(200);

/// What `--redis` names.
#[derive(Clone, Debug)]
pub enum Target {
    /// One server: the primary itself (standalone, or a managed service's endpoint that
    /// follows its own failovers).
    Direct(ConnectionInfo),
    /// The primary of `service` as the Sentinels at `sentinels` name it; `data` (database,
    /// credentials) applies to the data nodes.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        service: String,
        data: RedisConnectionInfo,
    },
}

impl Target {
    /// `redis://…` / `rediss://…` / `unix://…` as the redis crate reads them, or
    /// `redis+sentinel://[user:pass@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB]`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            return url
                .into_connection_info()
                .map(Target::Direct)
                .map_err(|e| format!("bad Redis URL: {e}"));
        };
        let (auth, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or("redis+sentinel:// needs /SERVICE after the Sentinels' addresses")?;
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (h, p) = host
                .rsplit_once(':')
                .ok_or_else(|| format!("Sentinel address {host:?} has no :PORT"))?;
            let p: u16 = p
                .parse()
                .map_err(|_| format!("Sentinel address {host:?}: bad port"))?;
            let h = h.trim_start_matches('[').trim_end_matches(']');
            if h.is_empty() {
                return Err(format!("Sentinel address {host:?} has no host"));
            }
            sentinels.push((h.to_owned(), p));
        }
        let (service, db) = match path.split_once('/') {
            Some((s, db)) => (
                s,
                db.parse::<i64>()
                    .map_err(|_| format!("redis+sentinel://…/{s}/{db}: bad database number"))?,
            ),
            None => (path, 0),
        };
        if service.is_empty() {
            return Err("redis+sentinel:// needs a service name (/SERVICE)".into());
        }
        let mut data = RedisConnectionInfo {
            db,
            ..Default::default()
        };
        if let Some(auth) = auth {
            let (user, pass) = match auth.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => ("", Some(auth)),
            };
            data.username = (!user.is_empty()).then(|| user.to_owned());
            data.password = pass.filter(|p| !p.is_empty()).map(str::to_owned);
        }
        Ok(Target::Sentinel {
            sentinels,
            service: service.to_owned(),
            data,
        })
    }

    /// The primary's address now: the one server, or the first answer of a Sentinel (asked
    /// in turn) that names a primary.
    pub async fn resolve(&self) -> Result<ConnectionInfo, String> {
        let (sentinels, service, data) = match self {
            Target::Direct(info) => return Ok(info.clone()),
            Target::Sentinel {
                sentinels,
                service,
                data,
            } => (sentinels, service, data),
        };
        let mut last = String::from("no Sentinel given");
        for (host, port) in sentinels {
            match ask_sentinel(host, *port, service).await {
                Ok(Some((h, p))) => {
                    return Ok(ConnectionInfo {
                        addr: ConnectionAddr::Tcp(h, p),
                        redis: data.clone(),
                    })
                }
                Ok(None) => last = format!("Sentinel {host}:{port} knows no primary {service:?}"),
                Err(e) => last = format!("Sentinel {host}:{port}: {e}"),
            }
        }
        Err(last)
    }

    pub fn is_sentinel(&self) -> bool {
        matches!(self, Target::Sentinel { .. })
    }
}

async fn ask_sentinel(
    host: &str,
    port: u16,
    service: &str,
) -> Result<Option<(String, u16)>, String> {
    let client = redis::Client::open(ConnectionInfo {
        addr: ConnectionAddr::Tcp(host.to_owned(), port),
        redis: RedisConnectionInfo::default(),
    })
    .map_err(|e| e.to_string())?;
    let ask = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(service)
            .query_async::<Option<(String, u16)>>(&mut con)
            .await
    };
    match tokio::time::timeout(SENTINEL_TIMEOUT, ask).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// The connections to the primary, as of the last lookup.
struct Current {
    /// `host:port`, for logs.
    addr: String,
    client: redis::Client,
    /// Every decision and read.
    con: ConnectionManager,
    /// Writes that are only acknowledged once a replica has them (`WAIT` blocks the
    /// connection it runs on: the decisions do not queue behind it).
    durable: ConnectionManager,
}

/// This node's way to its Redis primary.
pub struct Primary {
    target: Target,
    config: ConnectionManagerConfig,
    current: RwLock<Current>,
    /// One lookup at a time, and not more often than [`LOOKUP_EVERY`].
    lookup: tokio::sync::Mutex<Option<Instant>>,
    /// Woken when the connections moved: loops waiting to reconnect go at once.
    moved: tokio::sync::Notify,
}

impl Primary {
    /// Finds the primary and connects to it (within `timeout`).
    pub async fn connect(
        target: Target,
        config: ConnectionManagerConfig,
        timeout: Duration,
    ) -> Result<Arc<Primary>, String> {
        let current = tokio::time::timeout(timeout, open(&target, &config))
            .await
            .map_err(|_| "no answer from Redis".to_owned())??;
        Ok(Arc::new(Primary {
            target,
            config,
            current: RwLock::new(current),
            lookup: tokio::sync::Mutex::new(None),
            moved: tokio::sync::Notify::new(),
        }))
    }

    /// A connection for one call (cheap: a clone of the shared multiplexed one).
    pub fn con(&self) -> ConnectionManager {
        self.read().con.clone()
    }

    /// The connection for writes acknowledged only once replicated ([`Current::durable`]).
    pub fn durable(&self) -> ConnectionManager {
        self.read().durable.clone()
    }

    /// The primary's client, for connections of their own (subscriptions, blocking reads).
    pub fn client(&self) -> redis::Client {
        self.read().client.clone()
    }

    /// Where the connections go now (`host:port`).
    pub fn addr(&self) -> String {
        self.read().addr.clone()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A call failed with `error` (None: it timed out). With Sentinel, when the error may
    /// mean the primary moved, looks it up in the background and moves there.
    pub fn failed(self: &Arc<Self>, error: Option<&redis::RedisError>) {
        if !self.target.is_sentinel() || !error.is_none_or(moved_hint) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { me.follow().await });
    }

    /// Resolves when the connections move to another primary (a Sentinel failover); never
    /// for a `redis://` target.
    pub async fn moved(&self) {
        self.moved.notified().await
    }

    /// Asks the Sentinels where the primary is; moves the connections if it changed.
    /// Returns whether they moved.
    pub async fn follow(&self) -> bool {
        let Ok(mut last) = self.lookup.try_lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < LOOKUP_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        let info = match self.target.resolve().await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask Redis Sentinel where the primary is");
                return false;
            }
        };
        if addr_of(&info) == self.addr() {
            return false;
        }
        match open_at(info, &self.config).await {
            Ok(next) => {
                tracing::warn!(from = %self.addr(), to = %next.addr, "Redis primary moved (Sentinel): following");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
                self.moved.notify_waiters();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to the primary Redis Sentinel names");
                false
            }
        }
    }
}

/// Whether an error may mean the primary is elsewhere now.
fn moved_hint(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::ReadOnly | redis::ErrorKind::BusyLoadingError
        )
        || e.code() == Some("MASTERDOWN")
}

fn addr_of(info: &ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(h, p)
        | ConnectionAddr::TcpTls {
            host: h, port: p, ..
        } => {
            format!("{h}:{p}")
        }
        other => format!("{other:?}"),
    }
}

async fn open(target: &Target, config: &ConnectionManagerConfig) -> Result<Current, String> {
    open_at(target.resolve().await?, config).await
}

async fn open_at(
    info: ConnectionInfo,
    config: &ConnectionManagerConfig,
) -> Result<Current, String> {
    let addr = addr_of(&info);
    let client = redis::Client::open(info).map_err(|e| format!("bad Redis address: {e}"))?;
    let con = ConnectionManager::new_with_config(client.clone(), config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let durable = ConnectionManager::new_with_config(client.clone(), config.clone())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Current {
        addr,
        client,
        con,
        durable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_the_service_and_the_data_nodes_database() {
        let t = Target::parse("redis+sentinel://:secret@10.0.0.1:26379,[::1]:26380/tim/2").unwrap();
        let Target::Sentinel {
            sentinels,
            service,
            data,
        } = t
        else {
            panic!("a sentinel target")
        };
        assert_eq!(
            sentinels,
            vec![("10.0.0.1".to_owned(), 26379), ("::1".to_owned(), 26380)]
        );
        assert_eq!(service, "tim");
        assert_eq!((data.db, data.password.as_deref()), (2, Some("secret")));
        let t = Target::parse("redis+sentinel://h:1/tim").unwrap();
        assert!(
            matches!(t, Target::Sentinel { data, .. } if data.db == 0 && data.password.is_none())
        );
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong() {
        for (url, says) in [
            ("redis+sentinel://h:1", "/SERVICE"),
            ("redis+sentinel://h/tim", "no :PORT"),
            ("redis+sentinel://h:x/tim", "bad port"),
            ("redis+sentinel://:1/tim", "no host"),
            ("redis+sentinel://h:1/", "service name"),
            ("redis+sentinel://h:1/tim/x", "bad database"),
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/0"),
            Ok(Target::Direct(_))
        ));
        assert!(Target::parse("nonsense").is_err());
    }
}
