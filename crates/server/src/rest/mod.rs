//! The admin REST API, compatible with Tencent's (`docs/rest.md`):
//! `/v4/im_open_login_svc/{kick,account_import,multiaccount_import,account_delete,
//! account_check}`, `/v4/openim/query_online_status` and timd's own `/v4/timd/...` (login
//! settings, `settings.rs`; the console's, `console.rs`), by POST — or any other method
//! carrying the JSON body, as Tencent's service accepts.
//!
//! Every answer is HTTP 200 with `ActionStatus` / `ErrorCode` / `ErrorInfo`, so clients
//! written for Tencent only change the host. A call is checked in full — path, URL and
//! admin UserSig ([`auth`]), rate ([`limit`]), body ([`body`]) — before it has any effect,
//! and its effect runs in a task of its own, so a caller hanging up cannot leave a kick
//! durable but not applied.

pub mod accounts;
pub mod auth;
pub mod body;
pub mod console;
pub mod error;
pub mod kick;
pub mod limit;
pub mod online;
pub mod settings;

use std::future::Future;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

pub use auth::Caller;
pub use error::RestError;

pub use crate::clock::unix_secs as unix_now;
use crate::state::AppState;

/// Items per batch call (`multiaccount_import`, `account_delete`, `account_check`).
pub const MAX_BATCH: usize = 100;
/// Accounts per `query_online_status` call.
pub const MAX_QUERY_ACCOUNTS: usize = 500;
/// How long a call waits for its store work before answering 70169 (the work goes on).
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The APIs served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Kick,
    AccountImport,
    MultiAccountImport,
    AccountDelete,
    AccountCheck,
    QueryOnlineStatus,
    GetLoginSettings,
    SetLoginSettings,
    GetLoginSettingsHistory,
    OnlineSummary,
    UserSessions,
    GetEvents,
    GetEventCounts,
}

impl Api {
    pub const ALL: [Api; 13] = [
        Api::Kick,
        Api::AccountImport,
        Api::MultiAccountImport,
        Api::AccountDelete,
        Api::AccountCheck,
        Api::QueryOnlineStatus,
        Api::GetLoginSettings,
        Api::SetLoginSettings,
        Api::GetLoginSettingsHistory,
        Api::OnlineSummary,
        Api::UserSessions,
        Api::GetEvents,
        Api::GetEventCounts,
    ];

    pub const fn path(self) -> &'static str {
        match self {
            Api::Kick => "/v4/im_open_login_svc/kick",
            Api::AccountImport => "/v4/im_open_login_svc/account_import",
            Api::MultiAccountImport => "/v4/im_open_login_svc/multiaccount_import",
            Api::AccountDelete => "/v4/im_open_login_svc/account_delete",
            Api::AccountCheck => "/v4/im_open_login_svc/account_check",
            Api::QueryOnlineStatus => "/v4/openim/query_online_status",
            Api::GetLoginSettings => "/v4/timd/get_login_settings",
            Api::SetLoginSettings => "/v4/timd/set_login_settings",
            Api::GetLoginSettingsHistory => "/v4/timd/get_login_settings_history",
            Api::OnlineSummary => "/v4/timd/online_summary",
            Api::UserSessions => "/v4/timd/user_sessions",
            Api::GetEvents => "/v4/timd/get_events",
            Api::GetEventCounts => "/v4/timd/get_event_counts",
        }
    }

    pub fn from_path(path: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.path() == path)
    }
}

/// Mounts the REST API on `router`: the APIs, and 60009 for anything else under `/v4`.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let handler = |State(state): State<AppState>, request: Request| async move {
        handle(state, request).await
    };
    router
        .route("/v4", any(handler))
        .route("/v4/", any(handler))
        .route("/v4/{*rest}", any(handler))
}

/// The fields an API answers beyond the three common ones.
pub type Fields = Map<String, Value>;

/// `value`'s fields (a struct serializing to an object).
pub fn fields(value: impl Serialize) -> Fields {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        other => unreachable!("answers serialize to objects, got {other:?}"),
    }
}

async fn handle(state: AppState, request: Request) -> Response {
    // Caller-chosen: bounded and escaped before it reaches the logs.
    let path = auth::echo(request.uri().path());
    let result = call(&state, request).await;
    if let Err(e) = &result {
        let code = e.code();
        match e {
            RestError::Store(err) => {
                tracing::error!(path = %path, code, error = %err, "REST call failed: store")
            }
            RestError::Timeout | RestError::Internal => {
                tracing::warn!(path = %path, code, "REST call failed: {e}")
            }
            _ => tracing::info!(path = %path, code, "REST call refused: {e}"),
        }
    }
    Json(envelope(result)).into_response()
}

/// Tencent's answer: `ActionStatus`, `ErrorCode`, `ErrorInfo`, then the call's own fields.
pub fn envelope(result: Result<Fields, RestError>) -> Fields {
    let mut answer = Fields::new();
    match result {
        Ok(fields) => {
            answer.insert("ActionStatus".into(), "OK".into());
            answer.insert("ErrorCode".into(), 0.into());
            answer.insert("ErrorInfo".into(), "".into());
            answer.extend(fields);
        }
        Err(e) => {
            answer.insert("ActionStatus".into(), "FAIL".into());
            answer.insert("ErrorCode".into(), e.code().into());
            answer.insert("ErrorInfo".into(), e.to_string().into());
        }
    }
    answer
}

/// Checks and runs one call, in the documented order: nothing that fails a check has an
/// effect, and a call over the rate limit reads no body.
async fn call(state: &AppState, request: Request) -> Result<Fields, RestError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let api = Api::from_path(path).ok_or_else(|| RestError::NoSuchApi(auth::echo(path)))?;
    // Any method: Tencent's service reads the JSON body whatever the method, and published
    // clients send e.g. `account_check` as a GET with a body.
    let query = auth::parse_query(parts.uri.query().unwrap_or(""))?;
    let caller = auth::authenticate(&query, state.apps(), unix_now())?;
    let limiter = caller.app.rest_limiter();
    if !limiter.try_acquire(Instant::now()) {
        state.metrics().rest_rate_limited();
        return Err(RestError::RateLimited(limiter.per_second()));
    }
    // The admin's own kick time lives where every user's does; asked only once the caller
    // proved a valid admin UserSig and is within the app's rate.
    let admin_kicked_at = state
        .backend()
        .kicked_at(caller.app.sdkappid, &caller.admin)
        .await?;
    auth::check_admin_kick(&caller, admin_kicked_at)?;
    let body = body::read_object(body).await?;
    match api {
        Api::Kick => kick::kick(state, &caller, &body).await,
        Api::AccountImport => accounts::import(state, &caller, &body).await,
        Api::MultiAccountImport => accounts::multi_import(state, &caller, &body).await,
        Api::AccountDelete => accounts::delete(state, &caller, &body).await,
        Api::AccountCheck => accounts::check(state, &caller, &body).await,
        Api::QueryOnlineStatus => online::query(state, &caller, &body).await,
        Api::GetLoginSettings => settings::get(state, &caller, &body).await,
        Api::SetLoginSettings => settings::set(state, &caller, &body).await,
        Api::GetLoginSettingsHistory => settings::history(state, &caller, &body).await,
        Api::OnlineSummary => console::online_summary(state, &caller, &body).await,
        Api::UserSessions => console::user_sessions(state, &caller, &body).await,
        Api::GetEvents => console::get_events(state, &caller, &body).await,
        Api::GetEventCounts => console::get_event_counts(state, &caller, &body).await,
    }
}

/// Runs a call's effect (store work, then what must follow it) in its own task, so it
/// completes even if the caller hangs up; waits for it at most [`STORE_TIMEOUT`].
pub async fn detached<T: Send + 'static>(
    effect: impl Future<Output = Result<T, RestError>> + Send + 'static,
) -> Result<T, RestError> {
    match tokio::time::timeout(STORE_TIMEOUT, tokio::spawn(effect)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => {
            tracing::error!(error = %join, "REST effect task failed");
            Err(RestError::Internal)
        }
        Err(_) => Err(RestError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_apis() {
        for api in Api::ALL {
            assert_eq!(Api::from_path(api.path()), Some(api));
        }
        for path in [
            "/v4",
            "/v4/im_open_login_svc/kick/",
            "/v4/im_open_login_svc/KICK",
            "/v4/openim/sendmsg",
            "/v4/im_open_login_svc",
        ] {
            assert_eq!(Api::from_path(path), None, "{path}");
        }
    }
}
