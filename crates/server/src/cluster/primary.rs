//! Where this node's Redis is, and the connections to it: one address (`redis://`), the
//! primary Redis Sentinel names (`redis+sentinel://`), followed through a failover, or a Redis
//! Cluster (`redis+cluster://`), whose client routes each command to the shard of its key and
//! follows MOVED / ASK and shard failovers itself. Callers take a connection for each call
//! ([`Primary::con`], a [`Con`] whatever the topology) and report what failed
//! ([`Primary::failed`]): with Sentinel a failure that says "not the primary any more" (refused,
//! cut, timed out, `READONLY`, `LOADING`, `MASTERDOWN`) makes the node ask the Sentinels and move
//! its connections to the primary they name. The few things a sharded Redis does differently
//! (a pipeline spans one slot, `WAIT` goes to the shard that took the write, `INFO` is per
//! shard) are here too ([`Primary::query_pipe`], [`Primary::wait`], [`Primary::info_all`]).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisFuture, RedisResult, Value,
};

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
    /// A Redis Cluster, found from any of `nodes` (the client learns the others and the
    /// slot map from the first that answers); keys are sharded by hash slot.
    Cluster { nodes: Vec<ConnectionInfo> },
}

impl Target {
    /// `redis://…` / `rediss://…` / `unix://…` as the redis crate reads them, or
    /// `redis+sentinel://[user:pass@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB]`.
    pub fn parse(url: &str) -> Result<Target, String> {
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return parse_cluster(rest);
        }
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
    /// in turn) that names a primary (a Redis Cluster: its first seed node).
    pub async fn resolve(&self) -> Result<ConnectionInfo, String> {
        let (sentinels, service, data) = match self {
            Target::Direct(info) => return Ok(info.clone()),
            Target::Cluster { nodes } => return Ok(nodes[0].clone()),
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

    /// Whether keys are sharded over several primaries (Redis Cluster).
    pub fn is_sharded(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// Whether writes have replicas to wait for by default (`--redis-wait-replicas`):
    /// Sentinel and Redis Cluster deployments fail over to a replica.
    pub fn has_replicas(&self) -> bool {
        !matches!(self, Target::Direct(_))
    }
}

/// `[user:pass@]HOST:PORT[,HOST:PORT…]` after `redis+cluster://` (no database: a Redis
/// Cluster has only database 0).
fn parse_cluster(rest: &str) -> Result<Target, String> {
    let (auth, hosts) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let hosts = hosts.trim_end_matches('/');
    if hosts.contains('/') {
        return Err("redis+cluster:// takes no database (a Redis Cluster has only 0)".into());
    }
    let mut data = RedisConnectionInfo::default();
    if let Some(auth) = auth {
        let (user, pass) = auth.split_once(':').unwrap_or(("", auth));
        data.username = (!user.is_empty()).then(|| user.to_owned());
        data.password = (!pass.is_empty()).then(|| pass.to_owned());
    }
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        let (h, p) = host
            .rsplit_once(':')
            .ok_or_else(|| format!("Redis Cluster address {host:?} has no :PORT"))?;
        let p: u16 = p
            .parse()
            .map_err(|_| format!("Redis Cluster address {host:?}: bad port"))?;
        let h = h.trim_start_matches('[').trim_end_matches(']');
        if h.is_empty() {
            return Err(format!("Redis Cluster address {host:?} has no host"));
        }
        nodes.push(ConnectionInfo {
            addr: ConnectionAddr::Tcp(h.to_owned(), p),
            redis: data.clone(),
        });
    }
    Ok(Target::Cluster { nodes })
}

/// A connection for calls, whatever the topology: commands go to the one primary, or (Redis
/// Cluster) to the shard of their first key.
#[derive(Clone)]
pub enum Con {
    /// The shared connection to the primary, reconnecting by itself.
    Managed(ConnectionManager),
    /// A connection of its own (a blocking read).
    Plain(MultiplexedConnection),
    /// Redis Cluster: routes by slot, follows MOVED / ASK, refreshes the slot map.
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Managed(c) => c.req_packed_command(cmd),
            Con::Plain(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Managed(c) => c.req_packed_commands(cmd, offset, count),
            Con::Plain(c) => c.req_packed_commands(cmd, offset, count),
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Managed(c) => c.get_db(),
            Con::Plain(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

impl Con {
    /// Runs `pipe` (no `.ignore()`d commands) and reads its replies as `T`. On one primary it
    /// is one pipeline; on a Redis Cluster a pipeline must stay on one slot, so each command
    /// goes to its own shard (concurrently) and the replies are put back in order.
    pub async fn query_pipe<T: FromRedisValue>(&mut self, pipe: &Pipeline) -> RedisResult<T> {
        let Con::Cluster(con) = self else {
            return pipe.query_async(self).await;
        };
        let replies = futures_util::future::try_join_all(pipe.cmd_iter().map(|cmd| {
            let mut con = con.clone();
            async move { cmd.query_async::<Value>(&mut con).await }
        }))
        .await?;
        T::from_redis_value(&Value::Array(replies))
    }

    /// Runs `pipe` for its effects only (replies dropped), as [`Con::query_pipe`].
    pub async fn exec_pipe(&mut self, pipe: &Pipeline) -> RedisResult<()> {
        let _: Value = self.query_pipe(pipe).await?;
        Ok(())
    }

    /// `WAIT replicas ms` for the writes this connection made: on a Redis Cluster, on the
    /// shard serving `key` (the one that took the write), else on every primary (the least
    /// count answers).
    pub async fn wait(&mut self, key: Option<&str>, replicas: u32, ms: u64) -> RedisResult<i64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(ms);
        match (&mut *self, key) {
            (Con::Cluster(con), Some(key)) => {
                let value = con.route_command(&wait, route_of(key)).await?;
                i64::from_redis_value(&value)
            }
            _ => wait.query_async(self).await,
        }
    }
}

/// The routing of a command on `key`: the primary of its slot.
fn route_of(key: &str) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot_of(key.as_bytes()),
        SlotAddr::Master,
    )))
}

/// A key's Redis Cluster hash slot: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, if not empty) or of the whole key, modulo 16384.
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let mut crc: u16 = 0;
    for byte in tagged.unwrap_or(key) {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
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
    /// For connections of their own (one primary; a Redis Cluster's seeds are in the target).
    client: Option<redis::Client>,
    /// Every decision and read.
    con: Con,
    /// Writes that are only acknowledged once a replica has them (`WAIT` blocks the
    /// connection it runs on: the decisions do not queue behind it).
    durable: Con,
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
    /// Redis Cluster: the seed the next subscription goes to (in turn, so a dead one is
    /// passed over at the next attempt).
    next_seed: AtomicUsize,
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
            next_seed: AtomicUsize::new(0),
        }))
    }

    /// A connection for one call (cheap: a clone of the shared multiplexed one).
    pub fn con(&self) -> Con {
        self.read().con.clone()
    }

    /// The connection for writes acknowledged only once replicated ([`Current::durable`]).
    pub fn durable(&self) -> Con {
        self.read().durable.clone()
    }

    /// A client for a subscription (`SUBSCRIBE`): the primary; on a Redis Cluster one of the
    /// seed nodes, each in turn (a `PUBLISH` reaches every node of a Redis Cluster, so any
    /// node hears every message; a dead one is passed over at the next attempt).
    pub fn subscriber(&self) -> Result<redis::Client, redis::RedisError> {
        match &self.target {
            Target::Cluster { nodes } => {
                let n = self.next_seed.fetch_add(1, Ordering::Relaxed) % nodes.len();
                redis::Client::open(nodes[n].clone())
            }
            _ => Ok(self
                .read()
                .client
                .clone()
                .expect("one primary has a client")),
        }
    }

    /// A connection of its own for a blocking read of `key` (`XREAD BLOCK` holds the
    /// connection it runs on), named `name` (`CLIENT SETNAME`, on the shard of `key`).
    pub async fn blocking(
        &self,
        key: &str,
        name: &str,
        connect_within: Duration,
        response_within: Duration,
    ) -> RedisResult<Con> {
        let mut con = match &self.target {
            Target::Cluster { nodes } => {
                let client = cluster_client(nodes, connect_within, response_within)?;
                Con::Cluster(client.get_async_connection().await?)
            }
            _ => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(connect_within)
                    .set_response_timeout(response_within);
                let client = self
                    .read()
                    .client
                    .clone()
                    .expect("one primary has a client");
                Con::Plain(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
        };
        let mut setname = redis::cmd("CLIENT");
        setname.arg("SETNAME").arg(name);
        match &mut con {
            Con::Cluster(c) => {
                c.route_command(&setname, route_of(key)).await?;
            }
            other => setname.query_async::<()>(other).await?,
        }
        Ok(con)
    }

    /// `INFO section` of every primary (one for one primary; each shard's of a Redis Cluster).
    pub async fn info_all(&self, section: &str) -> RedisResult<Vec<String>> {
        let mut info = redis::cmd("INFO");
        info.arg(section);
        match self.con() {
            Con::Cluster(mut con) => {
                let all = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::Special),
                ));
                match con.route_command(&info, all).await? {
                    Value::Map(pairs) => pairs
                        .iter()
                        .map(|(_, v)| String::from_redis_value(v))
                        .collect(),
                    other => Ok(vec![String::from_redis_value(&other)?]),
                }
            }
            mut con => Ok(vec![info.query_async(&mut con).await?]),
        }
    }

    /// Whether keys are sharded (Redis Cluster): a transaction spans one slot only.
    pub fn is_sharded(&self) -> bool {
        self.target.is_sharded()
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
        if !self.target.is_sentinel() {
            return false;
        }
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
    if let Target::Cluster { nodes } = target {
        let client = cluster_client(nodes, CLUSTER_CONNECT_WITHIN, CLUSTER_RESPONSE_WITHIN)
            .map_err(|e| format!("bad Redis Cluster address: {e}"))?;
        let con = client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let durable = client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let addr = nodes.iter().map(addr_of).collect::<Vec<_>>().join(",");
        return Ok(Current {
            addr,
            client: None,
            con: Con::Cluster(con),
            durable: Con::Cluster(durable),
        });
    }
    open_at(target.resolve().await?, config).await
}

/// A Redis Cluster connection's limits: a call (with the client's own retries on MOVED, ASK
/// and a shard failing over) is still cut at the caller's 2 s.
const CLUSTER_CONNECT_WITHIN: Duration = Duration::from_secs(2);
const CLUSTER_RESPONSE_WITHIN: Duration = Duration::from_secs(2);

fn cluster_client(
    nodes: &[ConnectionInfo],
    connect_within: Duration,
    response_within: Duration,
) -> RedisResult<redis::cluster::ClusterClient> {
    let mut builder = ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(connect_within)
        .response_timeout(response_within)
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500);
    let data = &nodes[0].redis;
    if let Some(user) = &data.username {
        builder = builder.username(user.clone());
    }
    if let Some(pass) = &data.password {
        builder = builder.password(pass.clone());
    }
    builder.build()
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
        client: Some(client),
        con: Con::Managed(con),
        durable: Con::Managed(durable),
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

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(
            slot_of(b"tim:{1400000000:alice}:u"),
            slot_of(b"1400000000:alice")
        );
        assert_eq!(slot_of(b"a{}b"), slot_of(b"a{}b"));
    }

    #[test]
    fn cluster_urls_name_the_seed_nodes() {
        let t = Target::parse("redis+cluster://:pw@127.0.0.1:7000,[::1]:7001").unwrap();
        let Target::Cluster { nodes } = t else {
            panic!("a cluster target")
        };
        assert_eq!(nodes.len(), 2);
        assert_eq!(addr_of(&nodes[1]), "::1:7001");
        assert_eq!(nodes[0].redis.password.as_deref(), Some("pw"));
        for (url, says) in [
            ("redis+cluster://h", "no :PORT"),
            ("redis+cluster://h:1/2", "no database"),
            ("redis+cluster://:1", "no host"),
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
