//! The embedded store: accounts (and, for the REST issue, kick times) in one SQLite file.
//!
//! [`Store`] is the synchronous SQL layer. The server never calls it on the async runtime:
//! [`StoreHandle`] owns a dedicated `timd-store` thread that runs jobs in order and commits
//! them in batches (one `fsync` for many first logins under `synchronous=FULL`), answering
//! each caller only after its batch is durable.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

/// Bumped by every schema change; `open` upgrades older files and refuses newer ones.
pub const SCHEMA_VERSION: u32 = 1;
/// The database file inside `--data-dir`.
pub const DATABASE_FILE: &str = "timd.sqlite3";

/// Jobs merged into one transaction at most: bounds the latency one slow batch adds.
const MAX_BATCH: usize = 256;
/// Jobs waiting for the store thread at most; callers wait (backpressure) beyond that.
const QUEUE_DEPTH: usize = 4096;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error("sqlite: {0}")]
    Sqlite(String),
    #[error("database schema version {0} is newer than this timd supports ({SCHEMA_VERSION})")]
    NewerSchema(u32),
    #[error("the store thread is gone")]
    Unavailable,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

/// Synchronous access to the SQLite file. Blocking: use it directly only off the runtime
/// (tests, tools); the server goes through [`StoreHandle`].
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) `data_dir/timd.sqlite3`, creating `data_dir` too.
    pub fn open_in(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::DataDir {
            path: data_dir.to_owned(),
            message: e.to_string(),
        })?;
        Store::open(&data_dir.join(DATABASE_FILE))
    }

    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // WAL: readers never block the writer. FULL: a committed account survives power loss
        // (invariant 10), at the price of an fsync per commit that batching amortizes.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite(format!(
                "journal_mode is {mode}, not wal"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let version: u32 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema(version));
        }
        if version < 1 {
            self.conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS accounts (
                     user_id    TEXT PRIMARY KEY,
                     created_at INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS kicks (
                     user_id   TEXT PRIMARY KEY,
                     kicked_at INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Registers `user` (first login). Returns whether the account is new.
    pub fn register_account(&self, user: &str) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO accounts (user_id, created_at) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO NOTHING",
        )?;
        Ok(stmt.execute(rusqlite::params![user, unix_now() as i64])? == 1)
    }

    pub fn account_exists(&self, user: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM accounts WHERE user_id = ?1")?;
        Ok(stmt.query_row([user], |_| Ok(())).optional()?.is_some())
    }

    /// When `user`'s account was registered (unix seconds), if it exists.
    pub fn account_created_at(&self, user: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT created_at FROM accounts WHERE user_id = ?1")?;
        Ok(stmt
            .query_row([user], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|t| t.max(0) as u64))
    }

    /// The raw connection, for jobs that need SQL the methods above don't cover yet.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a job did, before its batch commits: whether to keep its changes, and how to tell
/// the caller once the commit's outcome is known.
struct Ran {
    ok: bool,
    finish: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

type Job = Box<dyn FnOnce(&Store) -> Ran + Send>;

/// Async, cloneable access to the store thread. Cheap to clone (one channel sender); the
/// thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct StoreHandle {
    jobs: mpsc::Sender<Job>,
}

impl StoreHandle {
    /// Opens the store in `data_dir` and starts its thread.
    pub fn open_in(data_dir: &Path) -> Result<StoreHandle, StoreError> {
        let store = Store::open_in(data_dir)?;
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("timd-store".into())
            .spawn(move || run_store_thread(store, rx))
            .map_err(|e| StoreError::Sqlite(format!("cannot start store thread: {e}")))?;
        Ok(StoreHandle { jobs })
    }

    /// Runs `f` on the store thread inside a savepoint of the current batch, and returns its
    /// result once that batch is committed (so an `Ok` is durable). An `Err` from `f` rolls
    /// back only `f`'s own changes.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let result = f(store);
            Ran {
                ok: result.is_ok(),
                finish: Box::new(move |commit| {
                    let _ = tx.send(commit.and(result));
                }),
            }
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// See [`Store::register_account`].
    pub async fn register_account(&self, user: &str) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.call(move |s| s.register_account(&user)).await
    }

    /// See [`Store::account_exists`].
    pub async fn account_exists(&self, user: &str) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.call(move |s| s.account_exists(&user)).await
    }
}

fn run_store_thread(store: Store, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&store, &mut batch);
    }
    tracing::debug!("store thread stopping");
}

/// One transaction for the whole batch, one savepoint per job, replies after the commit.
fn run_batch(store: &Store, batch: &mut Vec<Job>) {
    let conn = &store.conn;
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Without a transaction each statement still commits (durably) on its own.
        tracing::warn!(error = %e, "store: cannot begin a batch; running jobs one by one");
        for job in batch.drain(..) {
            (job(store).finish)(Ok(()));
        }
        return;
    }
    let mut finishers = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        let savepoint = conn.execute_batch("SAVEPOINT job");
        let ran = job(store);
        if savepoint.is_ok() {
            let end = if ran.ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "store: cannot end a job's savepoint");
            }
        }
        finishers.push(ran.finish);
    }
    let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if let Err(e) = &commit {
        tracing::error!(error = %e, "store: commit failed; the batch is lost");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for finish in finishers {
        finish(commit.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_created_once_and_accounts_persist() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        {
            let s = Store::open_in(&data).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert!(!s.account_exists("alice").unwrap());
            assert!(s.register_account("alice").unwrap());
            assert!(
                !s.register_account("alice").unwrap(),
                "second registration is not new"
            );
            assert!(s.account_exists("alice").unwrap());
            let mode: String = s
                .connection()
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = s
                .connection()
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            assert_eq!(sync, 2, "synchronous=FULL");
        }
        let s = Store::open_in(&data).unwrap();
        assert!(s.account_exists("alice").unwrap());
        assert!(s.account_created_at("alice").unwrap().unwrap() > 1_600_000_000);
        let kicks: i64 = s
            .connection()
            .query_row("SELECT count(*) FROM kicks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kicks, 0);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        Store::open_in(dir.path())
            .unwrap()
            .connection()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        assert_eq!(
            Store::open_in(dir.path()).err(),
            Some(StoreError::NewerSchema(99))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handle_batches_concurrent_jobs_and_isolates_failures() {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                h.register_account(&format!("u{i}")).await
            }));
        }
        // A failing job in the middle must not undo the others.
        let failed = handle
            .call(|s| {
                s.register_account("rolled_back")?;
                Err::<(), _>(StoreError::Sqlite("boom".into()))
            })
            .await;
        assert_eq!(failed, Err(StoreError::Sqlite("boom".into())));
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(true));
        }
        assert_eq!(handle.register_account("u3").await, Ok(false));
        assert_eq!(handle.account_exists("u49").await, Ok(true));
        assert_eq!(handle.account_exists("rolled_back").await, Ok(false));
        // Durable and visible to another connection.
        let other = Store::open_in(dir.path()).unwrap();
        assert!(other.account_exists("u0").unwrap());
        assert!(!other.account_exists("rolled_back").unwrap());
    }
}
