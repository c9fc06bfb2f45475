//! The demo page's "REST-kick this user": the server runs the admin REST API's `kick` itself,
//! as the app admin, so the page never holds an admin UserSig.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde_json::Value;

use super::instances::{user_of, UserQuery};
use super::{no_store, DemoState};
use crate::rest::body::Object;
use crate::rest::Caller;

/// `POST /demo/kick?user=U`: `im_open_login_svc/kick` of U. Answers with the REST API's
/// envelope (`ActionStatus`, `ErrorCode`, `ErrorInfo`), after the kick's second is over,
/// as the REST API does: a UserSig fetched after the answer logs in.
pub async fn kick(
    State(DemoState { app: state, .. }): State<DemoState>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Response {
    let user = match user_of(query) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let mut body = Object::new();
    body.insert("UserID".into(), Value::String(user.clone()));
    let app = state.apps().default_app();
    let caller = Caller {
        app: app.clone(),
        admin: app.admins()[0].clone(),
        sig_time: crate::clock::unix_secs(),
    };
    let answer = crate::rest::envelope(crate::rest::kick::kick(&state, &caller, &body).await);
    tracing::info!(user, code = %answer["ErrorCode"], "demo: REST kick as the admin");
    no_store(Json(answer))
}
