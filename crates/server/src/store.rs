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

/// The REST API's accounts and kick times (`rest/`, `kicks.rs`).
impl Store {
    /// Which of `users` have an account, in order.
    pub fn accounts_exist(&self, users: &[String]) -> Result<Vec<bool>, StoreError> {
        users.iter().map(|u| self.account_exists(u)).collect()
    }

    /// Registers every one of `users` (REST import); returns how many were new.
    pub fn import_accounts(&self, users: &[String]) -> Result<usize, StoreError> {
        let mut new = 0;
        for user in users {
            new += usize::from(self.register_account(user)?);
        }
        Ok(new)
    }

    /// Registers `user` at login unless its UserSig, issued at `sig_time`, is revoked by a
    /// kick or deletion. `None` when revoked (nothing written), else whether the account is
    /// new. Run in the store's job order, this closes the race where a login checked just
    /// before a deletion re-creates the deleted account.
    pub fn register_unless_revoked(
        &self,
        user: &str,
        sig_time: u64,
    ) -> Result<Option<bool>, StoreError> {
        if self.kicked_at(user)?.is_some_and(|k| sig_time <= k) {
            return Ok(None);
        }
        self.register_account(user).map(Some)
    }

    /// Records a kick of `user` at `at` (unix seconds) if the account exists; returns
    /// whether it does. A kick time never moves backwards.
    pub fn kick_account(&self, user: &str, at: u64) -> Result<bool, StoreError> {
        if !self.account_exists(user)? {
            return Ok(false);
        }
        self.record_kick(user, at)?;
        Ok(true)
    }

    /// Deletes each of `users` that exists and records a kick at `at` for it, so that its
    /// earlier UserSigs cannot log in (and re-create it). Returns which were deleted.
    pub fn delete_accounts(&self, users: &[String], at: u64) -> Result<Vec<bool>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM accounts WHERE user_id = ?1")?;
        let mut deleted = Vec::with_capacity(users.len());
        for user in users {
            let gone = stmt.execute([user])? == 1;
            if gone {
                self.record_kick(user, at)?;
            }
            deleted.push(gone);
        }
        Ok(deleted)
    }

    fn record_kick(&self, user: &str, at: u64) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO kicks (user_id, kicked_at) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET kicked_at = max(kicked_at, excluded.kicked_at)",
        )?;
        stmt.execute(rusqlite::params![user, clamp_i64(at)])?;
        Ok(())
    }

    /// `user`'s last kick (unix seconds), if any.
    pub fn kicked_at(&self, user: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kicked_at FROM kicks WHERE user_id = ?1")?;
        Ok(stmt
            .query_row([user], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|t| t.max(0) as u64))
    }

    /// Every kick time, to fill the in-memory cache at start.
    pub fn kicks(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id, kicked_at FROM kicks")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|row| Ok(row.map(|(user, at)| (user, at.max(0) as u64))?))
            .collect()
    }
}

fn clamp_i64(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
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
        StoreHandle::start(Store::open_in(data_dir)?)
    }

    /// Starts the store thread for an open `store` (read what you need from it first).
    pub fn start(store: Store) -> Result<StoreHandle, StoreError> {
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

    /// See [`Store::register_unless_revoked`].
    pub async fn register_unless_revoked(
        &self,
        user: &str,
        sig_time: u64,
    ) -> Result<Option<bool>, StoreError> {
        let user = user.to_owned();
        self.call(move |s| s.register_unless_revoked(&user, sig_time))
            .await
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
    fn kicks_and_deletions_are_durable_and_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open_in(dir.path()).unwrap();
            let users = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
            assert_eq!(s.import_accounts(&users[..2]).unwrap(), 2);
            assert_eq!(s.import_accounts(&users).unwrap(), 1, "only c is new");
            assert!(!s.kick_account("ghost", 10).unwrap(), "no account, no kick");
            assert_eq!(s.kicked_at("ghost").unwrap(), None);
            assert!(s.kick_account("a", 100).unwrap());
            assert!(s.kick_account("a", 90).unwrap());
            assert_eq!(s.kicked_at("a").unwrap(), Some(100), "never backwards");
            let gone = s
                .delete_accounts(&["b".into(), "ghost".into(), "b".into()], 50)
                .unwrap();
            assert_eq!(gone, [true, false, false]);
            assert_eq!(s.accounts_exist(&users).unwrap(), [true, false, true]);
            // Old UserSigs cannot re-create a deleted account; a new one can.
            assert_eq!(s.register_unless_revoked("b", 50).unwrap(), None);
            assert!(!s.account_exists("b").unwrap());
            assert_eq!(s.register_unless_revoked("b", 51).unwrap(), Some(true));
            assert_eq!(s.register_unless_revoked("c", 1).unwrap(), Some(false));
        }
        let s = Store::open_in(dir.path()).unwrap();
        let mut kicks = s.kicks().unwrap();
        kicks.sort();
        assert_eq!(kicks, [("a".to_owned(), 100), ("b".to_owned(), 50)]);
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
