//! Native demo devices: on the demo page's request, `timd` logs a native client in as
//! Android, iPhone, iPad, Windows or Mac on its own `/ws`, signing the UserSig with the app
//! key. The client is `tim_client::Client`, the library behind `timd client`, so the device
//! behaves exactly as a real native instance would (issue 9 wants the client split out of
//! `timd` later; until then the demo uses the dependency `timd client` already brings).
//!
//! Bounded: at most [`MAX_DEVICES`] at once. Each ends (its session destroyed) when it is
//! kicked, logged out from the page, or when the server shuts down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use tim_client::{Client, Event, Handle, Platform};
use tokio_util::sync::CancellationToken;

use super::{error, no_store};
use crate::state::AppState;

/// Most native demo devices running at once, across all users.
pub const MAX_DEVICES: usize = 10;
/// Validity of a device's UserSig: a day (a demo device lasting longer is kicked with
/// `userSigExpired`, as a real one without renewal would be).
pub const DEVICE_USERSIG_SECS: u64 = 86_400;
/// How long a device's login, logout or destroy may take before the demo gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The running devices, by instance id. Cheap to clone.
#[derive(Clone, Default)]
pub struct Devices {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Where this server listens (set by `run`): the devices connect there.
    server: OnceLock<SocketAddr>,
    running: Mutex<HashMap<String, Device>>,
}

struct Device {
    user: String,
    platform: Platform,
    handle: Handle,
}

/// One running device, as `/demo/devices` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    pub instance: String,
    pub user: String,
    pub platform: Platform,
}

/// `GET /demo/devices` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceList {
    pub max: usize,
    pub devices: Vec<DeviceInfo>,
}

impl Devices {
    /// Records the address the server's listener is bound to.
    pub fn set_server(&self, addr: SocketAddr) {
        let _ = self.inner.server.set(addr);
    }

    pub fn is_device(&self, instance: &str) -> bool {
        self.running().contains_key(instance)
    }

    pub fn list(&self) -> Vec<DeviceInfo> {
        let mut list: Vec<DeviceInfo> = self
            .running()
            .iter()
            .map(|(instance, d)| DeviceInfo {
                instance: instance.clone(),
                user: d.user.clone(),
                platform: d.platform,
            })
            .collect();
        list.sort_by(|a, b| (&a.user, &a.instance).cmp(&(&b.user, &b.instance)));
        list
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, Device>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, instance: &str) -> Option<Handle> {
        self.running().remove(instance).map(|d| d.handle)
    }

    /// Starts a device for `user` on `platform` and logs it in; answers once the login
    /// settled. The device's task then watches its events until it ends.
    async fn start(
        &self,
        state: &AppState,
        user: &str,
        platform: Platform,
    ) -> Result<DeviceInfo, (StatusCode, String)> {
        let Some(server) = self.inner.server.get().copied() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is not listening on a socket: no demo devices".into(),
            ));
        };
        let config = state.config();
        let instance = tim_client::random_instance_id();
        let session = tim_client::Config::new(config.sdkappid, platform, instance.clone());
        let (handle, events) = {
            let mut running = self.running();
            if running.len() >= MAX_DEVICES {
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("at most {MAX_DEVICES} demo devices at once: log one out first"),
                ));
            }
            let (handle, events) = Client::new(&format!("ws://{server}"), session).split();
            running.insert(
                instance.clone(),
                Device {
                    user: user.to_owned(),
                    platform,
                    handle: handle.clone(),
                },
            );
            (handle, events)
        };
        tokio::spawn(watch(
            self.clone(),
            instance.clone(),
            events,
            state.shutdown_token().clone(),
        ));
        // A UserSig issued in the second of a REST kick of the user would be refused.
        if let Some(kicked_at) = state.kicked_at(user).filter(|&k| k >= unix_now()) {
            crate::rest::kick::settle(kicked_at).await;
        }
        let usersig = tim_usersig::generate(
            config.sdkappid,
            &config.key,
            user,
            unix_now(),
            DEVICE_USERSIG_SECS,
        );
        let login = tokio::time::timeout(CALL_TIMEOUT, handle.login(user, &usersig)).await;
        match login {
            Ok(Ok(_)) => {
                tracing::info!(
                    user,
                    platform = platform.as_str(),
                    instance,
                    "demo device logged in"
                );
                Ok(DeviceInfo {
                    instance,
                    user: user.to_owned(),
                    platform,
                })
            }
            failed => {
                if let Some(handle) = self.take(&instance) {
                    end(handle).await;
                }
                let message = match failed {
                    Ok(Err(e)) => format!("the device's login failed: {} {}", e.code, e.message),
                    _ => "the device's login did not settle in time".to_owned(),
                };
                Err((StatusCode::BAD_GATEWAY, message))
            }
        }
    }

    /// Logs the device out and ends it. `None` if no such device runs.
    async fn stop(&self, instance: &str) -> Option<DeviceInfo> {
        let (handle, info) = self.running().get(instance).map(|d| {
            let info = DeviceInfo {
                instance: instance.to_owned(),
                user: d.user.clone(),
                platform: d.platform,
            };
            (d.handle.clone(), info)
        })?;
        // A device kicked meanwhile is not logged in any more (2024): it ends all the same.
        let _ = tokio::time::timeout(CALL_TIMEOUT, handle.logout()).await;
        if let Some(handle) = self.take(instance) {
            end(handle).await;
        }
        tracing::info!(instance, "demo device logged out");
        Some(info)
    }
}

/// Follows a device until it is kicked, logged out or the server stops, then ends it.
async fn watch(
    devices: Devices,
    instance: String,
    mut events: tim_client::Events,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            event = events.next() => match event {
                // The handles are gone: the device was ended elsewhere.
                None => return,
                Some(Event::Kicked(reason)) => {
                    tracing::info!(instance, reason = reason.as_str(), "demo device kicked out");
                    break;
                }
                Some(Event::NotReady) => break,
                Some(_) => {}
            },
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some(handle) = devices.take(&instance) {
        end(handle).await;
    }
}

/// Destroys the device's session; its driver task ends once the last handle is dropped.
async fn end(handle: Handle) {
    let _ = tokio::time::timeout(CALL_TIMEOUT, handle.destroy()).await;
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    user: Option<String>,
    platform: Option<String>,
}

/// `GET /demo/devices`: every running demo device.
pub async fn list(State(state): State<AppState>) -> Response {
    no_store(Json(DeviceList {
        max: MAX_DEVICES,
        devices: state.demo_devices().list(),
    }))
}

/// `POST /demo/devices?user=U&platform=P`: starts a native device (P one of Android, iPhone,
/// iPad, Windows, Mac) logged in as U. Answers the [`DeviceInfo`] once it is logged in.
pub async fn start(
    State(state): State<AppState>,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "the query string cannot be parsed");
    };
    let Some(user) = query.user.filter(|u| tim_proto::is_valid_user_id(u)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "user must be a UserID: 1 to 32 bytes of A-Z a-z 0-9 _ -",
        );
    };
    let platform = query.platform.as_deref().and_then(Platform::parse);
    let Some(platform) = platform.filter(|p| *p != Platform::Web) else {
        return error(
            StatusCode::BAD_REQUEST,
            "platform must be Android, iPhone, iPad, Windows or Mac",
        );
    };
    match state.demo_devices().start(&state, &user, platform).await {
        Ok(info) => no_store(Json(info)),
        Err((status, message)) => error(status, message),
    }
}

/// `DELETE /demo/devices/{instance}`: logs the device out and ends it; answers its
/// [`DeviceInfo`] (404 if no such device runs).
pub async fn stop(State(state): State<AppState>, Path(instance): Path<String>) -> Response {
    match state.demo_devices().stop(&instance).await {
        Some(info) => no_store(Json(info)),
        None => error(StatusCode::NOT_FOUND, "no such demo device"),
    }
}
