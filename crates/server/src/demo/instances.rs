//! What the demo page shows of the server: a user's instances as the backend holds them
//! (with the recent kicks), and the app's login settings — in either mode.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use tim_proto::{KickReason, Platform};

use super::devices::MAX_DEVICES;
use super::{error, no_store, DemoState};
use crate::clock::unix_ms;

/// `GET /demo/instances` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DemoInstances {
    pub user: String,
    /// The server's clock, unix ms (the page shows ages against it).
    pub server_time: u64,
    /// Earliest login first.
    pub instances: Vec<DemoInstance>,
    /// Recent kicks of this user's instances, oldest first.
    pub kicks: Vec<DemoKick>,
}

/// One instance holding a slot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DemoInstance {
    pub instance: String,
    pub platform: Platform,
    /// Login time, unix ms.
    pub since: u64,
    /// Connected now; `false` while it is away (socket gone, slot kept for a resume).
    pub online: bool,
    /// Cluster mode: the node holding it (empty in embedded mode).
    #[serde(default)]
    pub node: String,
    /// A native device the demo server runs (the page may log it out).
    pub demo_device: bool,
}

/// One kick, from the registry's tombstones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DemoKick {
    pub instance: String,
    pub platform: Platform,
    /// The kicked session's login time, unix ms.
    pub since: u64,
    pub reason: KickReason,
    /// When it was kicked, unix ms.
    pub at: u64,
}

/// `GET /demo/settings` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DemoSettings {
    #[serde(rename = "SDKAppID")]
    pub sdkappid: u32,
    /// Online Web instances per user.
    pub web_instances: u8,
    /// Instances per user on each of Android, iPhone, iPad, Windows, Mac.
    pub platform_instances: u8,
    /// Multi-platform policy: `single`, `dual`, `triple` or `all`.
    pub policy: String,
    /// The settings' version (each `set_login_settings` bumps it).
    #[serde(default)]
    pub version: u64,
    /// The app admin (who the demo's REST kick acts as).
    pub admin: String,
    pub heartbeat_ms: u32,
    pub resume_grace_ms: u32,
    pub max_demo_devices: usize,
}

#[derive(Debug, Deserialize)]
pub struct UserQuery {
    pub user: Option<String>,
}

/// The `user` of a demo query, or the 400 answer.
pub fn user_of(query: Result<Query<UserQuery>, QueryRejection>) -> Result<String, Box<Response>> {
    let user = match query {
        Ok(Query(query)) => query.user.filter(|u| tim_proto::is_valid_user_id(u)),
        Err(_) => None,
    };
    user.ok_or_else(|| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "user must be a UserID: 1 to 32 bytes of A-Z a-z 0-9 _ -",
        ))
    })
}

/// `GET /demo/instances?user=U`: U's instances (attached or away) and recent kicks.
pub async fn instances(
    State(demo): State<DemoState>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Response {
    let user = match user_of(query) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let (state, devices) = (&demo.app, &demo.devices);
    let app = state.apps().default_app().sdkappid;
    let backend = state.backend();
    let (instances, kicks) = match (
        backend.instances(app, &user).await,
        backend.recent_kicks(app, &user).await,
    ) {
        (Ok(instances), Ok(kicks)) => (instances, kicks),
        (Err(e), _) | (_, Err(e)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    let instances = instances
        .into_iter()
        .map(|i| DemoInstance {
            demo_device: devices.is_device(&i.instance),
            instance: i.instance,
            platform: i.platform,
            since: i.since_ms,
            online: i.attached,
            node: i.node,
        })
        .collect();
    let kicks = kicks
        .into_iter()
        .map(|k| DemoKick {
            instance: k.instance,
            platform: k.platform,
            since: k.since_ms,
            reason: k.reason,
            at: k.at_ms,
        })
        .collect();
    let server_time = unix_ms();
    no_store(Json(DemoInstances {
        user,
        server_time,
        instances,
        kicks,
    }))
}

/// `GET /demo/settings`: the login settings this server enforces now (they change at run
/// time through `set_login_settings`).
pub async fn settings(State(DemoState { app: state, .. }): State<DemoState>) -> Response {
    let config = state.config();
    let app = state.apps().default_app();
    let now = app.versioned();
    no_store(Json(DemoSettings {
        sdkappid: app.sdkappid,
        web_instances: now.settings.web_instances,
        platform_instances: now.settings.platform_instances,
        policy: now.settings.policy.as_str().to_owned(),
        version: now.version,
        admin: app.admins()[0].clone(),
        heartbeat_ms: config.heartbeat_ms,
        resume_grace_ms: config.resume_grace_ms,
        max_demo_devices: MAX_DEVICES,
    }))
}
