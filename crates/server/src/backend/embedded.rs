//! The embedded backend: one process, sessions in memory (one [`Registry`] per app),
//! accounts, kick times, ended sessions and login settings in SQLite (`store.rs`).
//!
//! A decision is atomic under the user's registry lock; what must be durable (an account,
//! a kick, a logout's end, a settings change) is committed by the store thread before the
//! caller hears of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tim_proto::{KickReason, Platform};

use super::{Admission, BackendError, LoginDecision, ResumeError, SettingsUpdate};
use crate::apps::{App, Apps, Versioned};
use crate::callbacks::{Change, Prepared, Sink};
use crate::clock::unix_secs;
use crate::config::Config;
use crate::ended::EndedSession;
use crate::kicks::Kicks;
use crate::registry::{Registry, RegistrySizes};
use crate::session::{InstanceInfo, KickRecord, NewSession, Outbox, SessionId, SocketCommand};
use crate::store::{SettingsChange, Store, StoreError, StoreHandle};
use crate::ticket::TicketClaims;

/// One app's share of the process: nothing is shared between apps.
struct Space {
    /// Shared with the store thread: a REST kick's or deletion's job reads who it ends.
    registry: Arc<Registry>,
    /// The REST kick times (durable ones only), read by every login and resume.
    kicks: Kicks,
}

pub struct Embedded {
    store: StoreHandle,
    spaces: HashMap<u32, Space>,
}

impl Embedded {
    /// Opens the store under `config.data_dir` (upgrading an older file in place), loads
    /// each app's kick times, ended sessions and login settings, and starts the store thread.
    pub fn open(config: &Config, apps: &Apps) -> Result<Embedded, StoreError> {
        let store = Store::open_in(&config.data_dir, apps.default_app().sdkappid)?;
        let now = unix_secs();
        // Tickets of sessions that ended before a restart stay dead.
        let mut ended: HashMap<u32, Vec<EndedSession>> = HashMap::new();
        for e in store.ended_sessions(now)? {
            ended.entry(e.app).or_default().push(e);
        }
        let mut loaded = Vec::with_capacity(apps.len());
        for app in apps.iter() {
            let kicks = Kicks::from_entries(store.kicks(app.sdkappid)?);
            let origin = config.settings_origin();
            let stored = match store.login_settings(app.sdkappid)? {
                // The configured settings changed since they were stored, and no admin has
                // changed them through the API since: the new configuration applies.
                Some(stored)
                    if stored.settings != app.initial_settings()
                        && store
                            .login_settings_history(app.sdkappid, 1)?
                            .first()
                            .is_some_and(|last| super::made_by_config(&last.admin)) =>
                {
                    let settings = app.initial_settings();
                    let version = store
                        .set_login_settings(app.sdkappid, stored.version, settings, origin, now)?
                        .unwrap_or(stored.version + 1);
                    tracing::info!(app = app.sdkappid, version, ?settings, "login settings: the {origin} changed them (no admin had changed them since)");
                    Versioned { version, settings }
                }
                Some(stored) => Versioned {
                    version: stored.version,
                    settings: stored.settings,
                },
                None => {
                    let settings = app.initial_settings();
                    let version = store
                        .set_login_settings(
                            app.sdkappid,
                            0,
                            settings,
                            config.settings_origin(),
                            now,
                        )?
                        .unwrap_or(1);
                    Versioned { version, settings }
                }
            };
            super::note_stored_settings(app, stored, origin);
            app.apply(stored);
            loaded.push((app.sdkappid, kicks));
        }
        let store = StoreHandle::start(store)?;
        let spaces = loaded
            .into_iter()
            .map(|(id, kicks)| {
                let registry = Arc::new(Registry::new().with_journal(store.ended_journal()));
                registry.restore_ended(ended.remove(&id).unwrap_or_default(), now);
                (id, Space { registry, kicks })
            })
            .collect();
        Ok(Embedded { store, spaces })
    }

    fn space(&self, app: u32) -> &Space {
        self.spaces
            .get(&app)
            .expect("apps are looked up in `Apps` before they reach the backend")
    }

    /// The store (fault injection in tests).
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// `app`'s registry (the sweeper, gauges).
    pub fn registry(&self, app: u32) -> &Registry {
        &self.space(app).registry
    }

    pub async fn login(&self, app: &App, new: NewSession) -> Result<LoginDecision, BackendError> {
        let (user, sig_time) = (new.user.clone(), new.sig_time);
        let space = self.space(app.sdkappid);
        // A returning user whose account is known to exist durably needs nothing of the
        // store: its kick time is in `kicks` (every durable kick is, and asked under the
        // user's lock below), and a deletion makes the account unknown before it commits.
        // Such a login is one whose store job ran just before any kick or deletion not yet
        // applied here: the kick that follows reaches it in the registry.
        let new_account = if self.store.known(app.sdkappid, &user) {
            false
        } else {
            // In the store's job order: a delete or kick committed before this cannot be
            // undone by a login checked just before it.
            let Some(new_account) = self
                .store
                .register_unless_revoked(app.sdkappid, &user, sig_time)
                .await?
            else {
                return Ok(LoginDecision::Revoked);
            };
            new_account
        };
        let kicks = &space.kicks;
        Ok(
            match space
                .registry
                .login_unless(new, &app.settings(), || kicks.revokes(&user, sig_time))
            {
                Some((info, kicked)) => LoginDecision::Admitted(Admission {
                    info,
                    kicked: kicked.len(),
                    kicked_platforms: kicked.iter().map(|k| k.platform).collect(),
                    new_account,
                    reported: false,
                }),
                None => LoginDecision::Revoked,
            },
        )
    }

    pub fn resume(
        &self,
        app: &App,
        claims: &TicketClaims,
        outbox: Outbox,
    ) -> Result<InstanceInfo, ResumeError> {
        let space = self.space(app.sdkappid);
        let kicks = &space.kicks;
        space
            .registry
            .resume_unless(claims, outbox, &app.settings(), || {
                kicks.revokes(&claims.user, claims.sig_time)
            })
            .map_err(ResumeError::Refused)
    }

    pub fn renew(
        &self,
        app: u32,
        user: &str,
        session: SessionId,
        expire_at: u64,
        sig_time: u64,
    ) -> Option<InstanceInfo> {
        self.space(app)
            .registry
            .renew(user, session, expire_at, sig_time)
    }

    /// The session ends; its end is durable before this returns, so its tickets stay dead
    /// across a restart. With `event` (its State.StateChange Logout), the end and the event
    /// are written in one store transaction: returns how many old events the cap dropped.
    pub async fn logout(
        &self,
        app: u32,
        user: &str,
        session: SessionId,
        event: Option<Prepared>,
    ) -> Result<(bool, Option<u64>), BackendError> {
        let Some(info) = self.space(app).registry.remove(user, session) else {
            return Ok((false, None));
        };
        let Some(event) = event else {
            self.store.flush().await?;
            return Ok((true, None));
        };
        // The registry journals the end too (an earlier job, maybe an earlier batch); written
        // again here with the event, so neither is committed without the other.
        let ended = EndedSession {
            app,
            user: info.user.clone(),
            instance: info.instance.clone(),
            since_ms: info.since_ms,
            end: crate::ended::End::LoggedOut,
            until: unix_secs() + crate::ticket::TICKET_LIFETIME_SECS,
        };
        let dropped = self
            .store
            .call(move |s| {
                s.record_ended_with_event(
                    &ended,
                    event.app,
                    &event.json,
                    event.t,
                    u64::from(event.cap),
                )
            })
            .await?;
        Ok((true, Some(dropped)))
    }

    pub fn detach(&self, app: u32, user: &str, session: SessionId, until: Instant) {
        self.space(app).registry.detach(user, session, until);
    }

    pub fn expire(&self, app: u32, user: &str, session: SessionId) {
        self.space(app)
            .registry
            .kick_session(user, session, KickReason::UserSigExpired);
    }

    /// After a durable kick (or delete) of `user` at `at`: later logins with older
    /// UserSigs are refused, then every online instance is kicked. The cache is updated
    /// first, so a login racing the kick either sees the new kick time or is registered in
    /// time to be kicked. The sessions in `reported` had their event stored with the kick.
    fn revoke_and_kick(&self, app: u32, user: &str, at: u64, reported: &[SessionId]) -> usize {
        let space = self.space(app);
        space.kicks.record(user, at);
        space
            .registry
            .kick_user_reported(user, KickReason::RestApi, reported)
    }

    /// The State.StateChange events of a REST kick or deletion of `user` (run in the
    /// kick's store job, once its kick time is written and before it is in force here): a
    /// `Logout`/`Unregister` by `RESTAPI` for each instance connected now, whose session
    /// goes in `sessions` (its socket will store none). An instance away has none (its
    /// Disconnect was reported); one that logs in or resumes after this (before the kick
    /// is in force) is kicked all the same, and its socket stores its event.
    fn kick_events(
        registry: &Registry,
        sink: Option<&Sink>,
        user: &str,
        sessions: &mut Vec<SessionId>,
    ) -> Vec<Prepared> {
        let Some(sink) = sink else {
            return Vec::new();
        };
        registry
            .instances(user)
            .into_iter()
            .filter(|i| i.attached)
            .filter_map(|i| {
                let event = sink.prepare(&i, Change::RestKick, None)?;
                sessions.push(i.session);
                Some(event)
            })
            .collect()
    }

    /// REST `kick`: the kick time and, with `sink` (the app has a callback), the events of
    /// the instances it ends are one store transaction; then the kick is in force here.
    pub async fn kick_user(
        &self,
        app: u32,
        user: &str,
        at: u64,
        sink: Option<Sink>,
    ) -> Result<Option<usize>, BackendError> {
        let u = user.to_owned();
        let registry = Arc::clone(&self.space(app).registry);
        let job_sink = sink.clone();
        let kicked = self
            .store
            .call(move |s| {
                let mut sessions = Vec::new();
                let dropped = s.kick_account_with_events(app, &u, at, || {
                    Self::kick_events(&registry, job_sink.as_ref(), &u, &mut sessions)
                })?;
                Ok(dropped.map(|d| (d, sessions)))
            })
            .await?;
        Ok(kicked.map(|(dropped, sessions)| {
            if let Some(sink) = &sink {
                sink.stored(Ok(dropped));
            }
            self.revoke_and_kick(app, user, at, &sessions)
        }))
    }

    /// REST `account_delete`: as [`Embedded::kick_user`], for each of `users` deleted.
    pub async fn delete_accounts(
        &self,
        app: u32,
        users: &[String],
        at: u64,
        sink: Option<Sink>,
    ) -> Result<Vec<Option<usize>>, BackendError> {
        let list = users.to_vec();
        let registry = Arc::clone(&self.space(app).registry);
        let job_sink = sink.clone();
        let (deleted, sessions) = self
            .store
            .call(move |s| {
                let mut sessions = Vec::new();
                let deleted = s.delete_accounts_with_events(app, &list, at, |user| {
                    Self::kick_events(&registry, job_sink.as_ref(), user, &mut sessions)
                })?;
                Ok((deleted, sessions))
            })
            .await?;
        if let Some(sink) = &sink {
            sink.stored(Ok(deleted.iter().flatten().sum()));
        }
        Ok(users
            .iter()
            .zip(deleted)
            .map(|(user, gone)| gone.map(|_| self.revoke_and_kick(app, user, at, &sessions)))
            .collect())
    }

    pub async fn import(&self, app: u32, users: &[String]) -> Result<usize, BackendError> {
        let users = users.to_vec();
        Ok(self
            .store
            .call(move |s| s.import_accounts(app, &users))
            .await?)
    }

    pub async fn accounts_exist(
        &self,
        app: u32,
        users: &[String],
    ) -> Result<Vec<bool>, BackendError> {
        let users = users.to_vec();
        Ok(self
            .store
            .call(move |s| s.accounts_exist(app, &users))
            .await?)
    }

    pub fn instances(&self, app: u32, user: &str) -> Vec<InstanceInfo> {
        self.space(app).registry.instances(user)
    }

    pub fn recent_kicks(&self, app: u32, user: &str) -> Vec<KickRecord> {
        self.space(app).registry.recent_kicks(user)
    }

    /// `app`'s in-memory kick times (tests reach in to race a kick).
    pub fn kicks(&self, app: u32) -> &Kicks {
        &self.space(app).kicks
    }

    pub fn kicked_at(&self, app: u32, user: &str) -> Option<u64> {
        self.space(app).kicks.kicked_at(user)
    }

    /// Stores `settings` as the app's next version (durable before it is in force), then
    /// applies it here, and with `apply_now` kicks what it no longer allows.
    pub async fn set_settings(
        &self,
        app: &App,
        update: SettingsUpdate,
        admin: &str,
        apply_now: bool,
        sink: Option<Sink>,
    ) -> Result<Versioned, BackendError> {
        let (id, admin, initial) = (app.sdkappid, admin.to_owned(), app.initial_settings());
        // Settings changes of one app are serialized by the store thread: the stored ones
        // are read, changed and bumped in the same job, so concurrent changes of different
        // fields both stay.
        let new = self
            .store
            .call(move |s| {
                let (version, current) = s
                    .login_settings(id)?
                    .map_or((0, initial), |c| (c.version, c.settings));
                let settings = update.applied_to(current);
                let version = s
                    .set_login_settings(id, version, settings, &admin, unix_secs())?
                    .ok_or(StoreError::Unavailable)?;
                Ok(Versioned { version, settings })
            })
            .await?;
        let settings = new.settings;
        app.apply(new);
        if apply_now {
            let kicked = self.space(id).registry.enforce_quietly(&settings);
            // Each connected instance kicked is reported `Logout`/`Unregister` by `RESTAPI`
            // (the REST call ended it), all in one store transaction, before its socket hears
            // of the kick (then it stores nothing) and before this call is answered. The
            // kicks are this process's memory only: were it killed before that commit, its
            // sessions would go unreported as every session of a killed embedded timd does.
            let events: Vec<Prepared> = match &sink {
                Some(sink) => kicked
                    .iter()
                    .filter(|(slot, _)| slot.info.attached)
                    .filter_map(|(slot, _)| sink.prepare(&slot.info, Change::RestKick, None))
                    .collect(),
                None => Vec::new(),
            };
            if let Some(sink) = &sink {
                if !events.is_empty() {
                    let stored = self.store.call(move |s| s.callback_push_all(&events)).await;
                    if let Err(e) = &stored {
                        tracing::error!(app = id, error = %e, "ApplyNow: callback events not stored: they will not be sent");
                    }
                    sink.stored(stored.map_err(|e| e.to_string()));
                }
            }
            for (slot, reason) in &kicked {
                slot.notify(SocketCommand::Kick {
                    session: slot.info.session,
                    reason: *reason,
                    reported: true,
                });
            }
            tracing::info!(
                app = id,
                kicked = kicked.len(),
                "login settings applied now"
            );
        }
        Ok(new)
    }

    pub async fn settings_history(
        &self,
        app: u32,
        limit: usize,
    ) -> Result<Vec<SettingsChange>, BackendError> {
        Ok(self
            .store
            .call(move |s| s.login_settings_history(app, limit))
            .await?)
    }

    /// Frees the slots of instances gone longer than the resume grace period and expires
    /// sessions whose UserSig ran out while away, in every app. Returns how many went.
    pub fn sweep(&self, now: Instant) -> usize {
        let now_secs = unix_secs();
        self.spaces
            .values()
            .map(|s| s.registry.sweep(now, now_secs))
            .sum()
    }

    pub fn online_count(&self) -> usize {
        self.spaces
            .values()
            .map(|s| s.registry.online_count())
            .sum()
    }

    pub fn per_platform(&self) -> Vec<(Platform, usize)> {
        let mut counts: Vec<(Platform, usize)> = Platform::ALL.iter().map(|&p| (p, 0)).collect();
        for space in self.spaces.values() {
            for (i, (_, n)) in space.registry.per_platform().into_iter().enumerate() {
                counts[i].1 += n;
            }
        }
        counts
    }

    /// Accounts known to exist (no store round trip at their next login).
    pub fn known_accounts(&self) -> usize {
        self.store.known_count()
    }

    /// The sizes of every map that traffic grows, summed over the apps.
    pub fn sizes(&self) -> (RegistrySizes, usize) {
        let mut sizes = RegistrySizes::default();
        let mut kicks = 0;
        for space in self.spaces.values() {
            let s = space.registry.sizes();
            sizes.users += s.users;
            sizes.away += s.away;
            sizes.tombstones += s.tombstones;
            sizes.ended += s.ended;
            kicks += space.kicks.len();
        }
        (sizes, kicks)
    }
}
