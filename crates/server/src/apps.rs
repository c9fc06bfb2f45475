//! The apps one `timd` serves: each SDKAppID with its key, admins, REST rate limit, ticket
//! signer and the login settings in force. Apps share nothing; every lookup that starts
//! from a client's words (a login's SDKAppID, a ticket, a REST call's `sdkappid`) goes
//! through [`Apps`], and an unknown app is refused there.
//!
//! The login settings live in the backend (SQLite or Redis) with a version; [`App`] holds
//! the copy this process decides with, replaced as a whole when a newer version arrives.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::login::LoginChecker;
use crate::policy::LoginSettings;
use crate::rest::limit::RateLimiter;
use crate::ticket::{TicketClaims, TicketError, Tickets};

/// Admin accounts per app at most, as Tencent allows.
pub const MAX_ADMINS: usize = 10;
/// Apps per `timd` at most (one Tencent account holds up to 1,000).
pub const MAX_APPS: usize = 1000;

/// How one app is configured (the single-app flags, or one `[[app]]` of the apps file).
#[derive(Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub sdkappid: u32,
    /// The HMAC key of its UserSigs. Never logged.
    pub key: String,
    /// 1..=10 admin UserIDs (the REST API's `identifier`).
    pub admins: Vec<String>,
    /// The login settings it starts with when none are stored yet.
    pub login: LoginSettings,
    /// REST calls per second for the app (all APIs together); 0 = unlimited.
    pub rest_rate_limit: u32,
    /// Where its State.StateChange callbacks go (`callbacks/`); `None`: no callbacks.
    pub callback: Option<crate::callbacks::CallbackTarget>,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("sdkappid", &self.sdkappid)
            .field("key", &"<redacted>")
            .field("admins", &self.admins)
            .field("login", &self.login)
            .field("rest_rate_limit", &self.rest_rate_limit)
            .field("callback", &self.callback)
            .finish()
    }
}

/// Login settings with the version that made them (1 = the first stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub settings: LoginSettings,
}

/// One app at run time.
pub struct App {
    pub sdkappid: u32,
    key: String,
    admins: Vec<String>,
    tickets: Tickets,
    /// UserSig checks with the app's key, and its guessed-UserSig limiter.
    checker: LoginChecker,
    rest_limiter: RateLimiter,
    /// The app's first settings (used only when the backend has none stored).
    initial: LoginSettings,
    settings: RwLock<Versioned>,
}

impl App {
    pub fn new(config: &AppConfig) -> App {
        App {
            sdkappid: config.sdkappid,
            key: config.key.clone(),
            admins: config.admins.clone(),
            tickets: Tickets::new(&config.key),
            checker: LoginChecker::new(config.sdkappid, config.key.clone()),
            rest_limiter: RateLimiter::new(config.rest_rate_limit),
            initial: config.login,
            settings: RwLock::new(Versioned {
                version: 0,
                settings: config.login,
            }),
        }
    }

    /// The app's secret key (UserSig checks, the demo's UserSig vending).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a == user)
    }

    pub fn admins(&self) -> &[String] {
        &self.admins
    }

    pub fn tickets(&self) -> &Tickets {
        &self.tickets
    }

    /// Checks a login's (or renewal's) UserSig for this app.
    pub fn checker(&self) -> &LoginChecker {
        &self.checker
    }

    /// The app's REST call rate.
    pub fn rest_limiter(&self) -> &RateLimiter {
        &self.rest_limiter
    }

    pub fn initial_settings(&self) -> LoginSettings {
        self.initial
    }

    /// The login settings this process decides with now.
    pub fn settings(&self) -> LoginSettings {
        self.versioned().settings
    }

    pub fn versioned(&self) -> Versioned {
        *self.settings.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `new` if it is newer than what is in force; returns whether it was.
    pub fn apply(&self, new: Versioned) -> bool {
        let mut current = self.settings.write().unwrap_or_else(|e| e.into_inner());
        if new.version <= current.version {
            return false;
        }
        *current = new;
        true
    }
}

/// Every app this process serves, by SDKAppID.
pub struct Apps {
    by_id: HashMap<u32, Arc<App>>,
    /// In configuration order: the first is the default app (demo mode's, and the owner of
    /// a store or tickets written before timd served several apps).
    order: Vec<Arc<App>>,
}

impl Apps {
    /// The apps of `configs` (validated already: unique, non-empty).
    pub fn new(configs: &[AppConfig]) -> Apps {
        let order: Vec<Arc<App>> = configs.iter().map(|c| Arc::new(App::new(c))).collect();
        let by_id = order.iter().map(|a| (a.sdkappid, Arc::clone(a))).collect();
        Apps { by_id, order }
    }

    pub fn get(&self, sdkappid: u32) -> Option<&Arc<App>> {
        self.by_id.get(&sdkappid)
    }

    /// The first configured app.
    pub fn default_app(&self) -> &Arc<App> {
        &self.order[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.order.iter()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Verifies a ticket with the key of the app it names (a ticket from before several
    /// apps names none: the default app's).
    pub fn open_ticket(&self, ticket: &str) -> Result<(Arc<App>, TicketClaims), TicketError> {
        let named = Tickets::peek_app(ticket)?;
        let app = match named {
            0 => self.default_app(),
            id => self.get(id).ok_or(TicketError::UnknownApp)?,
        };
        let mut claims = app.tickets().open(ticket)?;
        claims.app = app.sdkappid;
        Ok((Arc::clone(app), claims))
    }
}
