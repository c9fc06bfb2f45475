//! The embedded store: accounts (and, for the REST issue, kick times) in one SQLite file.
//!
//! [`Store`] is the synchronous SQL layer. The server never calls it on the async runtime:
//! [`StoreHandle`] owns a dedicated `timd-store` thread that runs jobs in order and commits
//! them in batches (one `fsync` for many first logins under `synchronous=FULL`), answering
//! each caller only after its batch is durable.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::bounded::BoundedMap;
use crate::callbacks::Prepared;
use crate::clock::unix_secs as unix_now;
use crate::ended::{End, EndedSession};
use crate::policy::{LoginPolicy, LoginSettings};
use crate::registry::Journal;

/// Bumped by every schema change; `open` upgrades older files and refuses newer ones.
pub const SCHEMA_VERSION: u32 = 4;
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
    /// Accounts known to exist durably (see [`KnownAccounts`]).
    known: Arc<KnownAccounts>,
    /// Accounts the current batch registered: known once it commits.
    registered: RefCell<Vec<(u32, String)>>,
    /// Callback events waiting per app (counted once, then kept up to date here: the cap
    /// check must not count the table at every login).
    callback_counts: RefCell<std::collections::HashMap<u32, u64>>,
}

/// Accounts remembered per process at most by [`KnownAccounts`] (~100 bytes each).
pub const MAX_KNOWN_ACCOUNTS: usize = 262_144;

/// Accounts (app, UserID) that exist durably, so that a returning user's login needs no
/// store round trip. Written by the store thread only, in job order: an account becomes
/// known once the transaction that registered it is committed, and stops being known
/// before the transaction that deletes it commits. Bounded: a forgotten account only costs
/// its next login the round trip.
pub type KnownAccounts = BoundedMap<(u32, String), ()>;

/// An app's stored login settings and their version (1 = the first stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSettings {
    pub version: u64,
    pub settings: LoginSettings,
}

/// One change of an app's login settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsChange {
    pub version: u64,
    /// Unix seconds.
    pub time: u64,
    /// Who changed them: an admin UserID, or `(apps file)` / `(flags)` for the first ones.
    pub admin: String,
    pub settings: LoginSettings,
}

impl Store {
    /// Opens (creating if needed) `data_dir/timd.sqlite3`, creating `data_dir` too. Rows of
    /// a file written before timd served several apps belong to `legacy_app` (the app of the
    /// single-app flags, or the first app of the apps file).
    pub fn open_in(data_dir: &Path, legacy_app: u32) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::DataDir {
            path: data_dir.to_owned(),
            message: e.to_string(),
        })?;
        Store::open(&data_dir.join(DATABASE_FILE), legacy_app)
    }

    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path, legacy_app: u32) -> Result<Store, StoreError> {
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
        // SQLite's page cache: 16 MiB (its default is 2 MiB, 500 pages, which the ended
        // sessions a busy server journals push the accounts' B-tree out of, so first logins
        // read their pages back from the file).
        conn.pragma_update(None, "cache_size", -16_384)?;
        let store = Store {
            conn,
            known: Arc::new(KnownAccounts::new(MAX_KNOWN_ACCOUNTS)),
            registered: RefCell::new(Vec::new()),
            callback_counts: RefCell::new(std::collections::HashMap::new()),
        };
        store.migrate(legacy_app)?;
        Ok(store)
    }

    fn migrate(&self, legacy_app: u32) -> Result<(), StoreError> {
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
        if version < 2 {
            // Sessions that ended (logout, kick, replaced): their tickets stay dead across
            // restarts. One row per instance (its latest end), until no ticket can match.
            self.conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS ended_sessions (
                     user_id  TEXT NOT NULL,
                     instance TEXT NOT NULL,
                     since_ms INTEGER NOT NULL,
                     how      TEXT NOT NULL,
                     until    INTEGER NOT NULL,
                     PRIMARY KEY (user_id, instance)
                 ) WITHOUT ROWID;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if version < 3 {
            // Several apps: every key gains the app; the rows of a single-app file move to
            // `legacy_app`, in one transaction (a crash leaves the file at version 2).
            // Login settings, versioned, and their history, per app.
            let moved = self.conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 ALTER TABLE accounts RENAME TO accounts_v2;
                 ALTER TABLE kicks RENAME TO kicks_v2;
                 ALTER TABLE ended_sessions RENAME TO ended_sessions_v2;
                 CREATE TABLE accounts (
                     app        INTEGER NOT NULL,
                     user_id    TEXT NOT NULL,
                     created_at INTEGER NOT NULL,
                     PRIMARY KEY (app, user_id)
                 ) WITHOUT ROWID;
                 CREATE TABLE kicks (
                     app       INTEGER NOT NULL,
                     user_id   TEXT NOT NULL,
                     kicked_at INTEGER NOT NULL,
                     PRIMARY KEY (app, user_id)
                 ) WITHOUT ROWID;
                 CREATE TABLE ended_sessions (
                     app      INTEGER NOT NULL,
                     user_id  TEXT NOT NULL,
                     instance TEXT NOT NULL,
                     since_ms INTEGER NOT NULL,
                     how      TEXT NOT NULL,
                     until    INTEGER NOT NULL,
                     PRIMARY KEY (app, user_id, instance)
                 ) WITHOUT ROWID;
                 CREATE TABLE login_settings (
                     app       INTEGER PRIMARY KEY,
                     version   INTEGER NOT NULL,
                     web       INTEGER NOT NULL,
                     other     INTEGER NOT NULL,
                     policy    TEXT NOT NULL
                 );
                 CREATE TABLE login_settings_history (
                     app     INTEGER NOT NULL,
                     version INTEGER NOT NULL,
                     time    INTEGER NOT NULL,
                     admin   TEXT NOT NULL,
                     web     INTEGER NOT NULL,
                     other   INTEGER NOT NULL,
                     policy  TEXT NOT NULL,
                     PRIMARY KEY (app, version)
                 ) WITHOUT ROWID;
                 INSERT INTO accounts SELECT {legacy_app}, user_id, created_at FROM accounts_v2;
                 INSERT INTO kicks SELECT {legacy_app}, user_id, kicked_at FROM kicks_v2;
                 INSERT INTO ended_sessions
                     SELECT {legacy_app}, user_id, instance, since_ms, how, until FROM ended_sessions_v2;
                 DROP TABLE accounts_v2;
                 DROP TABLE kicks_v2;
                 DROP TABLE ended_sessions_v2;
                 PRAGMA user_version = 3;
                 COMMIT;"
            ));
            if let Err(e) = moved {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
            if version >= 1 {
                tracing::info!(
                    legacy_app,
                    "store upgraded to schema 3 (several apps): its accounts, kicks and ended \
                     sessions belong to app {legacy_app}"
                );
            }
        }
        if version < 4 {
            // The State.StateChange callbacks' outbox (`callbacks/`): events wait here until
            // the app's receiver accepted them. AUTOINCREMENT: ids never come back, so an
            // EventID stays unique across restarts.
            self.conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS callback_outbox (
                     id         INTEGER PRIMARY KEY AUTOINCREMENT,
                     app        INTEGER NOT NULL,
                     event      TEXT NOT NULL,
                     created_ms INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS callback_outbox_app ON callback_outbox (app, id);
                 PRAGMA user_version = 4;
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
    pub fn register_account(&self, app: u32, user: &str) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO accounts (app, user_id, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (app, user_id) DO NOTHING",
        )?;
        Ok(stmt.execute(rusqlite::params![app, user, unix_now() as i64])? == 1)
    }

    pub fn account_exists(&self, app: u32, user: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM accounts WHERE app = ?1 AND user_id = ?2")?;
        Ok(stmt
            .query_row(rusqlite::params![app, user], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// When `user`'s account was registered (unix seconds), if it exists.
    pub fn account_created_at(&self, app: u32, user: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT created_at FROM accounts WHERE app = ?1 AND user_id = ?2")?;
        Ok(stmt
            .query_row(rusqlite::params![app, user], |r| r.get::<_, i64>(0))
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
    pub fn accounts_exist(&self, app: u32, users: &[String]) -> Result<Vec<bool>, StoreError> {
        users.iter().map(|u| self.account_exists(app, u)).collect()
    }

    /// Registers every one of `users` (REST import); returns how many were new.
    pub fn import_accounts(&self, app: u32, users: &[String]) -> Result<usize, StoreError> {
        let mut new = 0;
        for user in users {
            new += usize::from(self.register_account(app, user)?);
        }
        Ok(new)
    }

    /// Registers `user` at login unless its UserSig, issued at `sig_time`, is revoked by a
    /// kick or deletion. `None` when revoked (nothing written), else whether the account is
    /// new. Run in the store's job order, this closes the race where a login checked just
    /// before a deletion re-creates the deleted account.
    ///
    /// Of its statements, at most one changes anything (so a job running it needs no
    /// savepoint: SQLite undoes a failed statement, or the whole transaction, by itself). A
    /// new account never kicked, the first login's case, is one statement.
    pub fn register_unless_revoked(
        &self,
        app: u32,
        user: &str,
        sig_time: u64,
    ) -> Result<Option<bool>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO accounts (app, user_id, created_at)
             SELECT ?1, ?2, ?3 WHERE NOT EXISTS
                 (SELECT 1 FROM kicks WHERE app = ?1 AND user_id = ?2 AND kicked_at >= ?4)
             ON CONFLICT (app, user_id) DO NOTHING",
        )?;
        let inserted = stmt.execute(rusqlite::params![
            app,
            user,
            unix_now() as i64,
            clamp_i64(sig_time)
        ])?;
        if inserted == 1 {
            return Ok(Some(true));
        }
        // Nothing inserted: the account exists, or a kick revokes this UserSig (or both).
        // The statement that decides when nothing was written, as before.
        if self.kicked_at(app, user)?.is_some_and(|k| sig_time <= k) {
            return Ok(None);
        }
        self.register_account(app, user).map(Some)
    }

    /// Records a kick of `user` at `at` (unix seconds) if the account exists; returns
    /// whether it does. A kick time never moves backwards.
    pub fn kick_account(&self, app: u32, user: &str, at: u64) -> Result<bool, StoreError> {
        if !self.account_exists(app, user)? {
            return Ok(false);
        }
        self.record_kick(app, user, at)?;
        Ok(true)
    }

    /// Deletes each of `users` that exists and records a kick at `at` for it, so that its
    /// earlier UserSigs cannot log in (and re-create it). Returns which were deleted.
    pub fn delete_accounts(
        &self,
        app: u32,
        users: &[String],
        at: u64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM accounts WHERE app = ?1 AND user_id = ?2")?;
        let mut deleted = Vec::with_capacity(users.len());
        for user in users {
            // Unknown before the deletion can commit (a login that found it known just
            // before is one that ran before the deletion: it is kicked with the others).
            let key = (app, user.clone());
            self.known.remove(&key);
            self.registered.borrow_mut().retain(|k| *k != key);
            let gone = stmt.execute(rusqlite::params![app, user])? == 1;
            if gone {
                self.record_kick(app, user, at)?;
            }
            deleted.push(gone);
        }
        Ok(deleted)
    }

    /// [`Store::kick_account`], and, if the account exists, queues the State.StateChange
    /// events `events()` makes once the kick time is written (the connected instances the
    /// kick ends: `Embedded::kick_user`) in the same transaction: the kick and its events
    /// are committed together or not at all. `None` if the account does not exist, else how
    /// many old events the cap dropped.
    pub fn kick_account_with_events(
        &self,
        app: u32,
        user: &str,
        at: u64,
        events: impl FnOnce() -> Vec<Prepared>,
    ) -> Result<Option<u64>, StoreError> {
        if !self.kick_account(app, user, at)? {
            return Ok(None);
        }
        self.callback_push_all(&events()).map(Some)
    }

    /// [`Store::delete_accounts`], and for each deleted user the events `events(user)` makes
    /// once it is deleted (its connected instances), in the same transaction. For each of
    /// `users`, `None` if it did not exist, else how many old events the cap dropped.
    pub fn delete_accounts_with_events(
        &self,
        app: u32,
        users: &[String],
        at: u64,
        mut events: impl FnMut(&str) -> Vec<Prepared>,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let deleted = self.delete_accounts(app, users, at)?;
        let mut out = Vec::with_capacity(users.len());
        for (user, gone) in users.iter().zip(deleted) {
            out.push(match gone {
                true => Some(self.callback_push_all(&events(user))?),
                false => None,
            });
        }
        Ok(out)
    }

    fn record_kick(&self, app: u32, user: &str, at: u64) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO kicks (app, user_id, kicked_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (app, user_id) DO UPDATE
                 SET kicked_at = max(kicked_at, excluded.kicked_at)",
        )?;
        stmt.execute(rusqlite::params![app, user, clamp_i64(at)])?;
        Ok(())
    }

    /// `user`'s last kick (unix seconds), if any.
    pub fn kicked_at(&self, app: u32, user: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kicked_at FROM kicks WHERE app = ?1 AND user_id = ?2")?;
        Ok(stmt
            .query_row(rusqlite::params![app, user], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|t| t.max(0) as u64))
    }

    /// Every kick time of `app`, to fill the in-memory cache at start.
    pub fn kicks(&self, app: u32) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id, kicked_at FROM kicks WHERE app = ?1")?;
        let rows = stmt.query_map([app], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|row| Ok(row.map(|(user, at)| (user, at.max(0) as u64))?))
            .collect()
    }

    /// `app`'s stored login settings, if it has any.
    pub fn login_settings(&self, app: u32) -> Result<Option<StoredSettings>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, web, other, policy FROM login_settings WHERE app = ?1",
        )?;
        let row = stmt
            .query_row([app], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()?;
        row.map(|(version, web, other, policy)| {
            Ok(StoredSettings {
                version: version.max(0) as u64,
                settings: settings_of(web, other, &policy)?,
            })
        })
        .transpose()
    }

    /// Stores `settings` as `app`'s next version, by `admin` at `time`, and records the
    /// change in the history, unless the stored version is no longer `expected` (another
    /// change won). Returns the new version, or `None` on a lost race.
    pub fn set_login_settings(
        &self,
        app: u32,
        expected: u64,
        settings: LoginSettings,
        admin: &str,
        time: u64,
    ) -> Result<Option<u64>, StoreError> {
        let current = self.login_settings(app)?.map_or(0, |s| s.version);
        if current != expected {
            return Ok(None);
        }
        let version = current + 1;
        let v = clamp_i64(version);
        self.conn
            .prepare_cached(
                "INSERT INTO login_settings (app, version, web, other, policy)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (app) DO UPDATE SET version = excluded.version,
                     web = excluded.web, other = excluded.other, policy = excluded.policy",
            )?
            .execute(rusqlite::params![
                app,
                v,
                settings.web_instances,
                settings.platform_instances,
                settings.policy.as_str()
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO login_settings_history (app, version, time, admin, web, other, policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(rusqlite::params![
                app,
                v,
                clamp_i64(time),
                admin,
                settings.web_instances,
                settings.platform_instances,
                settings.policy.as_str()
            ])?;
        Ok(Some(version))
    }

    /// `app`'s login settings changes, newest first, at most `limit`.
    pub fn login_settings_history(
        &self,
        app: u32,
        limit: usize,
    ) -> Result<Vec<SettingsChange>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, time, admin, web, other, policy FROM login_settings_history
             WHERE app = ?1 ORDER BY version DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![app, clamp_i64(limit as u64)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (version, time, admin, web, other, policy) = row?;
            out.push(SettingsChange {
                version: version.max(0) as u64,
                time: time.max(0) as u64,
                admin,
                settings: settings_of(web, other, &policy)?,
            });
        }
        Ok(out)
    }
}

/// The callbacks' outbox (`callbacks/outbox.rs`).
impl Store {
    fn callback_count(&self, app: u32) -> Result<u64, StoreError> {
        if let Some(n) = self.callback_counts.borrow().get(&app) {
            return Ok(*n);
        }
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM callback_outbox WHERE app = ?1",
            [app],
            |r| r.get(0),
        )?;
        self.callback_counts.borrow_mut().insert(app, n as u64);
        Ok(n as u64)
    }

    /// Queues `event` (JSON) for `app`; beyond `cap` waiting, drops the oldest. Returns how
    /// many were dropped.
    pub fn callback_push(
        &self,
        app: u32,
        event: &str,
        created_ms: u64,
        cap: u64,
    ) -> Result<u64, StoreError> {
        let n = self.callback_count(app)?;
        self.conn
            .prepare_cached(
                "INSERT INTO callback_outbox (app, event, created_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(rusqlite::params![app, event, clamp_i64(created_ms)])?;
        let mut n = n + 1;
        let mut dropped = 0;
        if n > cap {
            dropped = self
                .conn
                .prepare_cached(
                    "DELETE FROM callback_outbox WHERE id IN
                     (SELECT id FROM callback_outbox WHERE app = ?1 ORDER BY id LIMIT ?2)",
                )?
                .execute(rusqlite::params![app, clamp_i64(n - cap)])? as u64;
            n -= dropped;
        }
        self.callback_counts.borrow_mut().insert(app, n);
        Ok(dropped)
    }

    /// Queues each of `events` ([`Store::callback_push`]); returns how many old events the
    /// caps dropped.
    pub fn callback_push_all(&self, events: &[Prepared]) -> Result<u64, StoreError> {
        let mut dropped = 0;
        for e in events {
            dropped += self.callback_push(e.app, &e.json, e.t, u64::from(e.cap))?;
        }
        Ok(dropped)
    }

    /// Up to `max` of `app`'s queued events after id `after`, oldest first.
    pub fn callback_read(
        &self,
        app: u32,
        after: i64,
        max: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, event FROM callback_outbox WHERE app = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![app, after, max.min(i64::MAX as usize) as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes delivered events.
    pub fn callback_remove(&self, app: u32, ids: &[i64]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM callback_outbox WHERE app = ?1 AND id = ?2")?;
        let mut removed = 0;
        for id in ids {
            removed += stmt.execute(rusqlite::params![app, id])? as u64;
        }
        let n = self.callback_count(app)?;
        self.callback_counts
            .borrow_mut()
            .insert(app, n.saturating_sub(removed));
        Ok(())
    }

    /// How many events wait for `app`, and when the oldest was queued (unix ms).
    pub fn callback_stats(&self, app: u32) -> Result<(u64, Option<u64>), StoreError> {
        let n = self.callback_count(app)?;
        let oldest: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT created_ms FROM callback_outbox WHERE app = ?1 ORDER BY id LIMIT 1",
            )?
            .query_row([app], |r| r.get(0))
            .optional()?;
        Ok((n, oldest.map(|t| t.max(0) as u64)))
    }
}

/// Ended sessions (`ended.rs`).
impl Store {
    /// Records that a session ended and queues its State.StateChange `event` (JSON, made at
    /// `created_ms`) for `app` in the same transaction: the decision and its event are
    /// committed together or not at all (an embedded logout). Returns how many old events
    /// the cap dropped.
    pub fn record_ended_with_event(
        &self,
        e: &EndedSession,
        app: u32,
        event: &str,
        created_ms: u64,
        cap: u64,
    ) -> Result<u64, StoreError> {
        self.record_ended(e)?;
        self.callback_push(app, event, created_ms, cap)
    }

    /// Records that a session ended; an older end of the same instance never overwrites a
    /// newer one.
    pub fn record_ended(&self, e: &EndedSession) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO ended_sessions (app, user_id, instance, since_ms, how, until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (app, user_id, instance) DO UPDATE SET
                 since_ms = excluded.since_ms, how = excluded.how,
                 until = max(until, excluded.until)
             WHERE excluded.since_ms >= since_ms",
        )?;
        stmt.execute(rusqlite::params![
            e.app,
            e.user,
            e.instance,
            clamp_i64(e.since_ms),
            e.end.as_str(),
            clamp_i64(e.until)
        ])?;
        Ok(())
    }

    /// Forgets ended sessions no ticket can match at `now` (unix seconds), then returns
    /// the others (to fill the registry at start).
    pub fn ended_sessions(&self, now: u64) -> Result<Vec<EndedSession>, StoreError> {
        self.conn
            .prepare_cached("DELETE FROM ended_sessions WHERE until <= ?1")?
            .execute([clamp_i64(now)])?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT app, user_id, instance, since_ms, how, until FROM ended_sessions",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (app, user, instance, since, how, until) = row?;
            // An unknown spelling (a newer timd's) still ends the session.
            let end = End::parse(&how).unwrap_or(End::LoggedOut);
            out.push(EndedSession {
                app,
                user,
                instance,
                since_ms: since.max(0) as u64,
                end,
                until: until.max(0) as u64,
            });
        }
        Ok(out)
    }
}

fn clamp_i64(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Login settings as stored; a row no timd could have written is an error, not a default.
fn settings_of(web: i64, other: i64, policy: &str) -> Result<LoginSettings, StoreError> {
    let bad = || StoreError::Sqlite(format!("bad stored login settings: {web} {other} {policy}"));
    let settings = LoginSettings {
        web_instances: u8::try_from(web).map_err(|_| bad())?,
        platform_instances: u8::try_from(other).map_err(|_| bad())?,
        policy: policy.parse::<LoginPolicy>().map_err(|_| bad())?,
    };
    settings.validate().map_err(|_| bad())?;
    Ok(settings)
}

/// One queued piece of work: `run` executes it inside its savepoint and says whether it
/// succeeded; `finish` answers the caller once the outcome is known — the job's own result
/// if its transaction committed, or the error that undid it (including "never ran").
struct Job {
    run: Box<dyn FnOnce(&Store) -> bool + Send>,
    finish: Finish,
    /// Run inside a savepoint of its own. Without one, `run` must change the database with
    /// at most one statement (SQLite undoes a failed statement, or rolls the whole
    /// transaction back, by itself), so a failed job still leaves nothing.
    savepoint: bool,
}

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Where a batch's transaction control can be made to fail, for the fault tests (a disk that
/// fills up or errs exactly there). Armed with [`StoreHandle::inject_faults`]; each applies
/// to the next batch only.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    Begin,
    /// The savepoint of the batch's job number `n` (0-based).
    Savepoint(usize),
    /// The `RELEASE` / `ROLLBACK TO` that ends job `n`'s savepoint.
    EndSavepoint(usize),
    Commit,
}

type Faults = Arc<Mutex<Vec<FaultPoint>>>;

/// Async, cloneable access to the store thread. Cheap to clone (one channel sender); the
/// thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct StoreHandle {
    jobs: mpsc::Sender<Job>,
    faults: Faults,
    known: Arc<KnownAccounts>,
}

impl StoreHandle {
    /// Opens the store in `data_dir` (see [`Store::open_in`]) and starts its thread.
    pub fn open_in(data_dir: &Path, legacy_app: u32) -> Result<StoreHandle, StoreError> {
        StoreHandle::start(Store::open_in(data_dir, legacy_app)?)
    }

    /// Starts the store thread for an open `store` (read what you need from it first).
    pub fn start(store: Store) -> Result<StoreHandle, StoreError> {
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        let faults = Faults::default();
        let known = Arc::clone(&store.known);
        let thread_faults = Arc::clone(&faults);
        std::thread::Builder::new()
            .name("timd-store".into())
            .spawn(move || run_store_thread(store, rx, thread_faults))
            .map_err(|e| StoreError::Sqlite(format!("cannot start store thread: {e}")))?;
        Ok(StoreHandle {
            jobs,
            faults,
            known,
        })
    }

    /// Test hook: makes the next batch's transaction control fail at `points`, as a full or
    /// failing disk would there.
    #[doc(hidden)]
    pub fn inject_faults(&self, points: &[FaultPoint]) {
        lock(&self.faults).extend_from_slice(points);
    }

    /// Test hook: jobs queued that the store thread has not taken yet (a test holding the
    /// thread knows when a call is waiting behind it).
    #[doc(hidden)]
    pub fn queued(&self) -> usize {
        QUEUE_DEPTH - self.jobs.capacity()
    }

    /// Runs `f` on the store thread inside a savepoint of the current batch, and returns its
    /// result once that batch is committed (so an `Ok` is durable). An `Err` — from `f`, or
    /// from the transaction around it — means nothing `f` did was kept. `f` must stop at
    /// its first SQL error (as `?` does).
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.call_with(true, f).await
    }

    /// [`StoreHandle::call`] for an `f` that changes the database with at most one
    /// statement: it runs without a savepoint of its own (two statements fewer per job).
    async fn call_single_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.call_with(false, f).await
    }

    async fn call_with<T, F>(&self, savepoint: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let result = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&result);
        let job = Job {
            run: Box::new(move |store| {
                let r = f(store);
                let ok = r.is_ok();
                *lock(&slot) = Some(r);
                ok
            }),
            finish: Box::new(move |outcome| {
                let ran = lock(&result).take();
                let answer = match (outcome, ran) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Some(r)) => r,
                    (Ok(()), None) => Err(StoreError::Unavailable),
                };
                let _ = tx.send(answer);
            }),
            savepoint,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// The registry's journal: writes ended sessions in the background, in job order (so a
    /// later [`StoreHandle::flush`] waits for them). Never blocks: with the queue full, the
    /// end is kept in memory only (and logged).
    pub fn ended_journal(&self) -> Journal {
        let handle = self.clone();
        Box::new(move |entries: Vec<EndedSession>| {
            let job = Job {
                run: Box::new(move |store| {
                    let result = entries.iter().try_for_each(|e| store.record_ended(e));
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "store: cannot record ended sessions");
                    }
                    result.is_ok()
                }),
                finish: Box::new(|outcome| {
                    if let Err(e) = outcome {
                        tracing::error!(error = %e, "store: ended sessions not recorded");
                    }
                }),
                savepoint: true,
            };
            if handle.jobs.try_send(job).is_err() {
                tracing::warn!("store queue full: an ended session is remembered in memory only");
            }
        })
    }

    /// Returns once every job queued before it is committed (or failed): a write barrier.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(|_| Ok(())).await
    }

    /// See [`Store::register_account`].
    pub async fn register_account(&self, app: u32, user: &str) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.call(move |s| s.register_account(app, &user)).await
    }

    /// See [`Store::register_unless_revoked`].
    pub async fn register_unless_revoked(
        &self,
        app: u32,
        user: &str,
        sig_time: u64,
    ) -> Result<Option<bool>, StoreError> {
        let user = user.to_owned();
        // One statement changes anything (see `Store::register_unless_revoked`).
        self.call_single_write(move |s| {
            let registered = s.register_unless_revoked(app, &user, sig_time)?;
            if registered.is_some() {
                s.registered.borrow_mut().push((app, user));
            }
            Ok(registered)
        })
        .await
    }

    /// Whether `user`'s account is known to exist durably (see [`KnownAccounts`]).
    pub fn known(&self, app: u32, user: &str) -> bool {
        self.known.contains(&(app, user.to_owned()))
    }

    /// Accounts known now (`timd_state_entries{map="known_accounts"}`).
    pub fn known_count(&self) -> usize {
        self.known.len()
    }

    /// See [`Store::account_exists`].
    pub async fn account_exists(&self, app: u32, user: &str) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.call(move |s| s.account_exists(app, &user)).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_store_thread(store: Store, mut jobs: mpsc::Receiver<Job>, faults: Faults) {
    let mut batch = VecDeque::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push_back(first);
        // Drain what is queued; when that was little, give the runtime's threads one chance
        // to queue more (a burst of logins arrives spread over a few microseconds), so one
        // commit (and fsync) serves more of them.
        for pass in 0..2 {
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push_back(job),
                    Err(_) => break,
                }
            }
            if pass == 0 && batch.len() < MAX_BATCH / 4 {
                std::thread::yield_now();
            }
        }
        let mut armed = std::mem::take(&mut *lock(&faults));
        while !batch.is_empty() {
            run_transaction(&store, &mut batch, &mut armed);
        }
    }
    tracing::debug!("store thread stopping");
}

/// Transaction control for one batch, failing where a fault is armed.
struct Control<'a> {
    conn: &'a Connection,
    armed: &'a mut Vec<FaultPoint>,
}

impl Control<'_> {
    fn exec(&mut self, point: FaultPoint, sql: &str) -> Result<(), StoreError> {
        if let Some(i) = self.armed.iter().position(|p| *p == point) {
            self.armed.remove(i);
            return Err(StoreError::Sqlite(format!("injected fault at {point:?}")));
        }
        if sql.contains(';') {
            return self.conn.execute_batch(sql).map_err(StoreError::from);
        }
        // One statement: prepared once. Every login's job runs a SAVEPOINT and a RELEASE,
        // which `execute_batch` would parse and compile anew each time.
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Ends the transaction without keeping anything (a no-op if SQLite already did).
    fn abandon(&mut self) {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "store: cannot roll back");
            }
        }
    }
}

/// Runs jobs from the front of `batch` in one transaction, one savepoint each (but those
/// whose one statement is all they change: [`Job::savepoint`]), and answers them after the
/// commit. "A failed call changes nothing": a job whose savepoint cannot be
/// taken does not run; if a savepoint cannot be ended, or SQLite rolled the transaction back
/// on its own (as it may on a full disk or an I/O error), or the commit fails, every job of
/// the transaction so far is answered with the error. Jobs left in `batch` (after such an
/// abort) go to the next transaction.
fn run_transaction(store: &Store, batch: &mut VecDeque<Job>, armed: &mut Vec<FaultPoint>) {
    let mut control = Control {
        conn: &store.conn,
        armed,
    };
    // A transaction left open by an earlier failure holds nothing anyone was told about.
    control.abandon();
    if let Err(e) = control.exec(FaultPoint::Begin, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, jobs = batch.len(), "store: cannot begin a transaction; failing the batch");
        for job in batch.drain(..) {
            (job.finish)(Err(e.clone()));
        }
        return;
    }
    let mut finishers: Vec<Finish> = Vec::new();
    let mut n = 0;
    let aborted = loop {
        let Some(job) = batch.pop_front() else {
            break None;
        };
        let index = n;
        n += 1;
        if job.savepoint {
            if let Err(e) = control.exec(FaultPoint::Savepoint(index), "SAVEPOINT job") {
                (job.finish)(Err(e.clone()));
                break Some(e);
            }
        }
        let ok = (job.run)(store);
        finishers.push(job.finish);
        if store.conn.is_autocommit() {
            break Some(StoreError::Sqlite(
                "the transaction was rolled back by SQLite".into(),
            ));
        }
        if !job.savepoint {
            // A failed single write was undone by SQLite: the others' work stays.
            continue;
        }
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = control.exec(FaultPoint::EndSavepoint(index), end) {
            break Some(e);
        }
    };
    let outcome = match aborted {
        Some(e) => Err(e),
        None => control.exec(FaultPoint::Commit, "COMMIT"),
    };
    let registered = std::mem::take(&mut *store.registered.borrow_mut());
    match &outcome {
        Ok(()) => {
            for key in registered {
                store.known.insert(key, ());
            }
        }
        Err(e) => {
            tracing::error!(error = %e, jobs = finishers.len(), "store: transaction failed; its jobs changed nothing");
            control.abandon();
        }
    }
    for finish in finishers {
        finish(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app of these tests.
    pub(super) const A: u32 = 1_400_000_001;

    #[test]
    fn schema_is_created_once_and_accounts_persist() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        {
            let s = Store::open_in(&data, A).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert!(!s.account_exists(A, "alice").unwrap());
            assert!(s.register_account(A, "alice").unwrap());
            assert!(
                !s.register_account(A, "alice").unwrap(),
                "second registration is not new"
            );
            assert!(s.account_exists(A, "alice").unwrap());
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
        let s = Store::open_in(&data, A).unwrap();
        assert!(s.account_exists(A, "alice").unwrap());
        assert!(s.account_created_at(A, "alice").unwrap().unwrap() > 1_600_000_000);
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
            let s = Store::open_in(dir.path(), A).unwrap();
            let users = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
            assert_eq!(s.import_accounts(A, &users[..2]).unwrap(), 2);
            assert_eq!(s.import_accounts(A, &users).unwrap(), 1, "only c is new");
            assert!(
                !s.kick_account(A, "ghost", 10).unwrap(),
                "no account, no kick"
            );
            assert_eq!(s.kicked_at(A, "ghost").unwrap(), None);
            assert!(s.kick_account(A, "a", 100).unwrap());
            assert!(s.kick_account(A, "a", 90).unwrap());
            assert_eq!(s.kicked_at(A, "a").unwrap(), Some(100), "never backwards");
            let gone = s
                .delete_accounts(A, &["b".into(), "ghost".into(), "b".into()], 50)
                .unwrap();
            assert_eq!(gone, [true, false, false]);
            assert_eq!(s.accounts_exist(A, &users).unwrap(), [true, false, true]);
            // Old UserSigs cannot re-create a deleted account; a new one can.
            assert_eq!(s.register_unless_revoked(A, "b", 50).unwrap(), None);
            assert!(!s.account_exists(A, "b").unwrap());
            assert_eq!(s.register_unless_revoked(A, "b", 51).unwrap(), Some(true));
            assert_eq!(s.register_unless_revoked(A, "c", 1).unwrap(), Some(false));
        }
        let s = Store::open_in(dir.path(), A).unwrap();
        let mut kicks = s.kicks(A).unwrap();
        kicks.sort();
        assert_eq!(kicks, [("a".to_owned(), 100), ("b".to_owned(), 50)]);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        Store::open_in(dir.path(), A)
            .unwrap()
            .connection()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        assert_eq!(
            Store::open_in(dir.path(), A).err(),
            Some(StoreError::NewerSchema(99))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handle_batches_concurrent_jobs_and_isolates_failures() {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path(), A).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                h.register_account(A, &format!("u{i}")).await
            }));
        }
        // A failing job in the middle must not undo the others.
        let failed = handle
            .call(|s| {
                s.register_account(A, "rolled_back")?;
                Err::<(), _>(StoreError::Sqlite("boom".into()))
            })
            .await;
        assert_eq!(failed, Err(StoreError::Sqlite("boom".into())));
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(true));
        }
        assert_eq!(handle.register_account(A, "u3").await, Ok(false));
        assert_eq!(handle.account_exists(A, "u49").await, Ok(true));
        assert_eq!(handle.account_exists(A, "rolled_back").await, Ok(false));
        // Durable and visible to another connection.
        let other = Store::open_in(dir.path(), A).unwrap();
        assert!(other.account_exists(A, "u0").unwrap());
        assert!(!other.account_exists(A, "rolled_back").unwrap());
    }
}

/// "A failed call changes nothing", under transaction-control faults at every point of a
/// batch and under SQLite rolling a transaction back on its own.
#[cfg(test)]
mod fault_tests {
    use super::tests::A;
    use super::*;

    type Call = tokio::task::JoinHandle<Result<bool, StoreError>>;

    /// An account is known (no store round trip at its next login) only once its
    /// registration is committed, and no longer once a deletion of it has run, even one in
    /// the same batch as its registration.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accounts_are_known_only_while_durable() {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path(), A).unwrap();
        assert!(!handle.known(A, "a"));
        assert_eq!(
            handle.register_unless_revoked(A, "a", 10).await,
            Ok(Some(true))
        );
        assert!(handle.known(A, "a"));
        assert!(!handle.known(A + 1, "a"), "per app");
        assert_eq!(handle.known_count(), 1);
        // A revoked login registers nothing and knows nothing.
        handle
            .call(|s| s.delete_accounts(A, &["a".into()], 20))
            .await
            .unwrap();
        assert!(!handle.known(A, "a"));
        assert_eq!(handle.register_unless_revoked(A, "a", 20).await, Ok(None));
        assert!(!handle.known(A, "a"));
        // A failed commit: the registration is not durable, so not known.
        handle.inject_faults(&[FaultPoint::Commit]);
        assert!(handle.register_unless_revoked(A, "b", 10).await.is_err());
        assert!(!handle.known(A, "b"));
        // Registered and deleted in one batch (the thread held meanwhile): not known after.
        let release = hold(&handle).await;
        let h = handle.clone();
        let register = tokio::spawn(async move { h.register_unless_revoked(A, "c", 10).await });
        while handle.queued() < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let h = handle.clone();
        let delete =
            tokio::spawn(async move { h.call(|s| s.delete_accounts(A, &["c".into()], 5)).await });
        while handle.queued() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(release);
        assert_eq!(register.await.unwrap(), Ok(Some(true)));
        assert_eq!(delete.await.unwrap(), Ok(vec![true]));
        assert!(!handle.known(A, "c"));
        assert_eq!(handle.account_exists(A, "c").await, Ok(false));
    }

    /// An embedded logout's end and its callback event are one transaction: a failed
    /// commit keeps neither (the logout is answered with an error, and no Logout is sent
    /// for a session whose ticket could still resume), a good one both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_logout_and_its_event_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path(), A).unwrap();
        let ended = |instance: &str| EndedSession {
            app: A,
            user: "alice".into(),
            instance: instance.into(),
            since_ms: 5,
            end: crate::ended::End::LoggedOut,
            until: u64::MAX / 4,
        };
        let logout = |instance: &'static str| {
            let e = ended(instance);
            handle.call(move |s| s.record_ended_with_event(&e, A, r#"{"u":"alice"}"#, 7, 100))
        };
        handle.inject_faults(&[FaultPoint::Commit]);
        assert!(logout("t1").await.is_err());
        let (ends, events) = handle
            .call(|s| Ok((s.ended_sessions(0)?, s.callback_read(A, 0, 10)?)))
            .await
            .unwrap();
        assert!(ends.is_empty(), "{ends:?}");
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(logout("t2").await, Ok(0));
        let (ends, events) = handle
            .call(|s| Ok((s.ended_sessions(0)?, s.callback_read(A, 0, 10)?)))
            .await
            .unwrap();
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].instance, "t2");
        assert_eq!(events.len(), 1);
    }

    /// A REST kick's (and a deletion's) kick time and its callback events are one
    /// transaction: a failed commit keeps neither (the kick is answered with an error and
    /// kicks no one), a good one both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kick_and_its_events_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path(), A).unwrap();
        handle
            .call(|s| s.import_accounts(A, &["alice".into(), "bob".into()]))
            .await
            .unwrap();
        let events = |user: &str| {
            vec![Prepared {
                app: A,
                json: format!(r#"{{"u":"{user}"}}"#),
                t: 7,
                cap: 100,
            }]
        };
        let state = || {
            handle.call(|s| {
                Ok((
                    s.kicked_at(A, "alice")?,
                    s.account_exists(A, "bob")?,
                    s.callback_read(A, 0, 10)?,
                ))
            })
        };
        handle.inject_faults(&[FaultPoint::Commit]);
        let kick = handle
            .call(move |s| s.kick_account_with_events(A, "alice", 100, || events("alice")))
            .await;
        assert!(kick.is_err(), "{kick:?}");
        handle.inject_faults(&[FaultPoint::Commit]);
        let delete = handle
            .call(move |s| s.delete_accounts_with_events(A, &["bob".into()], 100, events))
            .await;
        assert!(delete.is_err(), "{delete:?}");
        let (kicked, bob, queued) = state().await.unwrap();
        assert_eq!(kicked, None, "no kick time kept");
        assert!(bob, "no deletion kept");
        assert!(queued.is_empty(), "no event kept: {queued:?}");
        // Without a fault: both, and nothing for an account that does not exist.
        let kick = handle
            .call(move |s| s.kick_account_with_events(A, "alice", 100, || events("alice")))
            .await;
        assert_eq!(kick, Ok(Some(0)));
        let ghost = handle
            .call(move |s| s.kick_account_with_events(A, "ghost", 100, || events("ghost")))
            .await;
        assert_eq!(ghost, Ok(None));
        let delete = handle
            .call(move |s| {
                s.delete_accounts_with_events(A, &["bob".into(), "ghost".into()], 100, events)
            })
            .await;
        assert_eq!(delete, Ok(vec![Some(0), None]));
        let (kicked, bob, queued) = state().await.unwrap();
        assert_eq!(kicked, Some(100));
        assert!(!bob);
        let users: Vec<&str> = queued.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(users, [r#"{"u":"alice"}"#, r#"{"u":"bob"}"#]);
    }

    /// Holds the store thread in a batch of its own until the returned sender is dropped, so
    /// that the jobs queued meanwhile form the next batch together.
    async fn hold(handle: &StoreHandle) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let h = handle.clone();
        tokio::spawn(async move {
            h.call(move |_| {
                let _ = started.send(());
                let _ = wait.recv();
                Ok(())
            })
            .await
        });
        running.await.unwrap();
        release
    }

    /// Queues jobs for `users`, in order, behind the held batch (each registers its user,
    /// then fails if the name says so); returns their calls once all are queued.
    async fn queue(handle: &StoreHandle, users: &[&'static str]) -> Vec<(&'static str, Call)> {
        let mut calls = Vec::new();
        for &user in users {
            let queued = QUEUE_DEPTH - handle.jobs.capacity();
            let h = handle.clone();
            let call = tokio::spawn(async move {
                h.call(move |s| {
                    let new = s.register_account(A, user)?;
                    if user.starts_with("fail") {
                        return Err(StoreError::Sqlite("the job failed".into()));
                    }
                    Ok(new)
                })
                .await
            });
            while QUEUE_DEPTH - handle.jobs.capacity() == queued {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            calls.push((user, call));
        }
        calls
    }

    /// Every call answered `Ok` left its account; every `Err` left nothing. Returns the
    /// users whose call succeeded.
    async fn outcomes_match_the_file(
        dir: &Path,
        calls: Vec<(&'static str, Call)>,
    ) -> Vec<&'static str> {
        let mut ok = Vec::new();
        let file = Store::open_in(dir, A).unwrap();
        for (user, call) in calls {
            let answer = call.await.unwrap();
            let present = file.account_exists(A, user).unwrap();
            assert_eq!(
                answer.is_ok(),
                present,
                "{user}: answered {answer:?}, present {present}"
            );
            if answer.is_ok() {
                ok.push(user);
            }
        }
        ok
    }

    async fn run_with(faults: &[FaultPoint], users: &[&'static str]) -> Vec<&'static str> {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path(), A).unwrap();
        let release = hold(&handle).await;
        handle.inject_faults(faults);
        let calls = queue(&handle, users).await;
        drop(release);
        outcomes_match_the_file(dir.path(), calls).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_cannot_begin_runs_nothing() {
        // Outside a transaction, the failing job's first statement would stay.
        assert_eq!(
            run_with(&[FaultPoint::Begin], &["a", "fail1"]).await,
            Vec::<&str>::new()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_without_its_savepoint_does_not_run() {
        // Job 1 would register, then fail: without a savepoint its half-done work must not
        // be committed. The rest of the batch still gets done in a new transaction.
        let ok = run_with(&[FaultPoint::Savepoint(1)], &["a", "fail1", "c"]).await;
        assert_eq!(ok, ["c"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_that_cannot_be_rolled_back_fails_its_transaction() {
        let ok = run_with(&[FaultPoint::EndSavepoint(1)], &["a", "fail1", "c"]).await;
        assert_eq!(ok, ["c"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_keeps_nothing() {
        assert_eq!(
            run_with(&[FaultPoint::Commit], &["a", "b"]).await,
            Vec::<&str>::new()
        );
    }

    /// SQLite may roll the whole transaction back by itself (a full disk, an I/O error): a
    /// trigger raising ROLLBACK does exactly that. The jobs before it are undone with it and
    /// answered so; the jobs after it must not run outside a transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_sqlite_rolled_back_loses_nothing_reported_done() {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path(), A).unwrap();
        handle
            .call(|s| {
                Ok(s.connection().execute_batch(
                    "CREATE TEMP TRIGGER disk_error BEFORE INSERT ON accounts
                     WHEN NEW.user_id = 'boom'
                     BEGIN SELECT RAISE(ROLLBACK, 'simulated I/O error'); END;",
                )?)
            })
            .await
            .unwrap();
        let release = hold(&handle).await;
        let calls = queue(&handle, &["a", "boom", "c", "d"]).await;
        drop(release);
        let ok = outcomes_match_the_file(dir.path(), calls).await;
        assert_eq!(ok, ["c", "d"]);
        // The store keeps working.
        assert_eq!(handle.register_account(A, "e").await, Ok(true));
    }

    /// First logins' registrations run without savepoints of their own: one that fails
    /// (its statement aborted, or the transaction rolled back under it) still leaves
    /// nothing, answers an error and is not known; the others of its batch are unaffected
    /// or, after a rollback, answered with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registrations_without_savepoints_fail_alone_or_with_their_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let handle = StoreHandle::open_in(dir.path(), A).unwrap();
        handle
            .call(|s| {
                Ok(s.connection().execute_batch(
                    "CREATE TEMP TRIGGER refuse BEFORE INSERT ON accounts
                     WHEN NEW.user_id = 'abort'
                     BEGIN SELECT RAISE(ABORT, 'simulated constraint'); END;
                     CREATE TEMP TRIGGER disk_error BEFORE INSERT ON accounts
                     WHEN NEW.user_id = 'boom'
                     BEGIN SELECT RAISE(ROLLBACK, 'simulated I/O error'); END;",
                )?)
            })
            .await
            .unwrap();
        // A kick revokes UserSigs issued at or before it; an existing account is not new.
        handle
            .call(|s| {
                s.register_account(A, "old")?;
                s.kick_account(A, "old", 100)
            })
            .await
            .unwrap();
        let register = |users: &'static [(&'static str, u64)]| {
            let handle = handle.clone();
            async move {
                let release = hold(&handle).await;
                let mut calls = Vec::new();
                for &(user, sig_time) in users {
                    let queued = handle.queued();
                    let h = handle.clone();
                    calls.push(tokio::spawn(async move {
                        h.register_unless_revoked(A, user, sig_time).await
                    }));
                    while handle.queued() == queued {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
                drop(release);
                let mut answers = Vec::new();
                for call in calls {
                    answers.push(call.await.unwrap());
                }
                answers
            }
        };
        let answers =
            register(&[("a", 1), ("abort", 1), ("old", 100), ("old", 101), ("c", 1)]).await;
        assert_eq!(answers[0], Ok(Some(true)));
        assert!(answers[1].is_err(), "{:?}", answers[1]);
        assert_eq!(answers[2], Ok(None), "revoked");
        assert_eq!(answers[3], Ok(Some(false)), "exists");
        assert_eq!(answers[4], Ok(Some(true)));
        let file = Store::open_in(dir.path(), A).unwrap();
        let exist = |users: &[&str]| {
            users
                .iter()
                .map(|u| file.account_exists(A, u).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(exist(&["a", "abort", "c"]), [true, false, true]);
        assert!(handle.known(A, "a") && handle.known(A, "c") && handle.known(A, "old"));
        assert!(!handle.known(A, "abort"));
        // The transaction rolled back by SQLite: every registration of it answered an error,
        // none kept or known; the next transaction's jobs go through.
        let answers = register(&[("d", 1), ("boom", 1), ("e", 1)]).await;
        assert!(answers[0].is_err() && answers[1].is_err(), "{answers:?}");
        assert_eq!(answers[2], Ok(Some(true)));
        assert_eq!(exist(&["d", "boom", "e"]), [false, false, true]);
        assert!(!handle.known(A, "d") && !handle.known(A, "boom") && handle.known(A, "e"));
    }
}
