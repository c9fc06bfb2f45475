//! The operator's console page (`/console`, `docs/console.md`): static files built into the
//! binary (served in every mode, not only `--demo`), whose script calls the admin REST API
//! of this same server with the admin UserSig the operator pastes. The page holds no secret
//! and the server gives it none: it works exactly as any REST client does.
//!
//! Served with a strict Content-Security-Policy (own scripts, styles and REST calls only; no
//! framing), so a stored UserSig cannot leave through an injected script or a frame.

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// What the console's pages may load and call.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Adds `/console` (and `/console/`), `/console/console.js` and `/console/console.css`.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/console", get(index))
        .route("/console/", get(index))
        .route(
            "/console/console.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/console.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}

/// The page, told whether the demo can sign an admin UserSig (demo mode with the public
/// demo key) and which SDKAppID to suggest (the default app's; not a secret).
async fn index(State(state): State<AppState>) -> Response {
    let app = state.apps().default_app();
    let demo = state.config().demo && app.key() == crate::config::DEMO_KEY;
    let page = INDEX
        .replace("__DEMO__", if demo { "1" } else { "0" })
        .replace("__SDKAPPID__", &app.sdkappid.to_string());
    file("text/html; charset=utf-8", page)
}

fn file(content_type: &'static str, body: impl Into<String>) -> Response {
    let mut response = body.into().into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on each load: a new timd's console is picked up at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
