//! Demo-mode routes: a UserSig vending endpoint, what the demo page shows of the server
//! (a user's instances and kicks, the login settings), native demo devices, a REST kick run
//! as the admin, and the static demo page + SDK package. Only mounted with `--demo`, which
//! `Config::validate` confines to loopback addresses: `/demo/usersig` lets anyone log in as
//! anyone, and `/demo/kick` kicks anyone.

pub mod devices;
pub mod instances;
pub mod kick;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tim_proto::ERR_INVALID_PARAMETERS;
use tower_http::services::ServeDir;

use crate::clock::unix_secs;
use crate::config::{Config, DEFAULT_USERSIG_EXPIRE_SECS};
use crate::state::AppState;

/// What the demo routes share: the server's state and the native devices they run. The
/// demo page shows the default app (the first one configured).
#[derive(Clone)]
pub struct DemoState {
    pub app: AppState,
    pub devices: devices::Devices,
}

/// Longest validity `/demo/usersig` hands out: 10 years.
pub const MAX_DEMO_EXPIRE_SECS: u64 = 10 * 365 * 86_400;

/// Adds the demo routes to `router`: `/demo/usersig`, `/demo/admin-usersig` (the console's
/// fill-in), `/demo/settings`, `/demo/instances`,
/// `/demo/devices`, `/demo/kick`, `/pkg/` (the SDK package) and `/` (the demo page), the
/// static ones with dev-friendly headers.
pub fn routes(router: Router<DemoState>, config: &Config) -> Router<DemoState> {
    let statics = Router::new()
        .nest_service("/pkg", ServeDir::new(&config.pkg_dir))
        .fallback_service(ServeDir::new(&config.www_dir))
        .layer(middleware::from_fn(dev_file_headers));
    router
        .route("/demo/usersig", get(demo_usersig))
        .route("/demo/admin-usersig", get(demo_admin_usersig))
        .route("/demo/settings", get(instances::settings))
        .route("/demo/instances", get(instances::instances))
        .route("/demo/devices", get(devices::list).post(devices::start))
        .route("/demo/devices/{instance}", delete(devices::stop))
        .route("/demo/kick", post(kick::kick))
        .merge(statics)
}

#[derive(Debug, Deserialize)]
pub struct UserSigQuery {
    user: Option<String>,
    expire: Option<String>,
}

/// `/demo/usersig` success body, with the field names of Tencent's demo `GenerateTestUserSig`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DemoUserSig {
    #[serde(rename = "SDKAppID")]
    pub sdkappid: u32,
    #[serde(rename = "userID")]
    pub user_id: String,
    #[serde(rename = "userSig")]
    pub user_sig: String,
}

/// `/demo/usersig` error body.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DemoError {
    pub code: u32,
    pub message: String,
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// A demo error answer: `code` is 70402 for a bad request, the HTTP status otherwise.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = if status == StatusCode::BAD_REQUEST {
        ERR_INVALID_PARAMETERS
    } else {
        u32::from(status.as_u16())
    };
    let body = DemoError {
        code,
        message: message.into(),
    };
    no_store((status, Json(body)))
}

/// Demo answers change from one call to the next: never cached.
pub(crate) fn no_store(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /demo/usersig?user=U[&expire=S]`: a UserSig for U, issued now by the demo app.
async fn demo_usersig(
    State(DemoState { app: state, .. }): State<DemoState>,
    query: Result<Query<UserSigQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad_request("the query string cannot be parsed");
    };
    let Some(user) = query.user.filter(|u| tim_proto::is_valid_user_id(u)) else {
        return bad_request("user must be a UserID: 1 to 32 bytes of A-Z a-z 0-9 _ -");
    };
    let app = state.apps().default_app();
    // An admin UserSig would open the REST API (kick, delete) to whoever asks.
    if app.is_admin(&user) {
        let body = DemoError {
            code: tim_proto::ERR_NEED_ADMIN,
            message: "the demo never signs for the app admin".into(),
        };
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let expire = match query.expire.as_deref().map(str::parse::<u64>) {
        None => DEFAULT_USERSIG_EXPIRE_SECS,
        Some(Ok(s)) if (1..=MAX_DEMO_EXPIRE_SECS).contains(&s) => s,
        Some(_) => {
            return bad_request(format!(
                "expire must be a number of seconds between 1 and {MAX_DEMO_EXPIRE_SECS}"
            ))
        }
    };
    let user_sig = tim_usersig::generate(app.sdkappid, app.key(), &user, unix_secs(), expire);
    let mut response = Json(DemoUserSig {
        sdkappid: app.sdkappid,
        user_id: user,
        user_sig,
    })
    .into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How long `/demo/admin-usersig`'s UserSigs are valid: one day.
pub const DEMO_ADMIN_EXPIRE_SECS: u64 = 86_400;

/// `GET /demo/admin-usersig`: an admin UserSig of the default app, for the console's "fill
/// in" in demo mode. Only with the embedded demo key (the guard refuses it otherwise): that
/// key is public, so anyone can sign with it anyway; with a key of its own the demo signs
/// nothing.
async fn demo_admin_usersig(State(DemoState { app: state, .. }): State<DemoState>) -> Response {
    let app = state.apps().default_app();
    let admin = app.admins()[0].clone();
    let user_sig = tim_usersig::generate(
        app.sdkappid,
        app.key(),
        &admin,
        unix_secs(),
        DEMO_ADMIN_EXPIRE_SECS,
    );
    no_store(Json(DemoUserSig {
        sdkappid: app.sdkappid,
        user_id: admin,
        user_sig,
    }))
}

/// Dev files change on every rebuild: never let a browser cache them, and give wasm and
/// JS module files the MIME types browsers insist on (streaming wasm compilation requires
/// `application/wasm`; module scripts require a JavaScript type).
async fn dev_file_headers(request: Request, next: Next) -> Response {
    let content_type = match request.uri().path().rsplit_once('.').map(|(_, ext)| ext) {
        Some("wasm") => Some("application/wasm"),
        Some("js" | "mjs") => Some("text/javascript; charset=utf-8"),
        _ => None,
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let (Some(ct), true) = (content_type, response.status().is_success()) {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    response
}
