//! Native demo devices: on the demo page's request, `timd` logs a native client in as
//! Android, iPhone, iPad, Windows or Mac on its own `/ws`, signing the UserSig with the app
//! key.
//!
//! The library keeps what the page sees (the routes, the bound, which instances are
//! devices, how each ends); the native client itself is a [`Driver`] the executable plugs
//! in through [`crate::ServeOptions`]. `timd serve --demo` plugs in tim-client
//! (`crates/timd-bin/src/demo_devices.rs`), so a device behaves exactly as a real native
//! instance would, and this library does not depend on the client. Without a driver the
//! device routes answer 503.
//!
//! Bounded: at most [`MAX_DEVICES`] at once. Each ends (its session destroyed) when it is
//! kicked, logged out from the page, or when the server shuts down.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use tim_proto::{KickReason, Platform};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{error, no_store, DemoState};
use crate::clock::unix_secs as unix_now;
use crate::state::AppState;

/// Most native demo devices running at once, across all users.
pub const MAX_DEVICES: usize = 10;
/// Validity of a device's UserSig: a day (a demo device lasting longer is kicked with
/// `userSigExpired`, as a real one without renewal would be).
pub const DEVICE_USERSIG_SECS: u64 = 86_400;
/// How long a device's login, logout or destroy may take before the demo gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A boxed future, so [`Driver`] and [`Session`] stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Starts native client sessions: what the demo needs of a native client library.
pub trait Driver: Send + Sync + 'static {
    /// A new session on `platform` for app `sdkappid`, speaking to the server at `url`
    /// (`ws://ADDR`), with an instance id of its own. Not logged in yet. Called inside
    /// the server's tokio runtime.
    fn session(&self, url: &str, sdkappid: u32, platform: Platform) -> Box<dyn Session>;
}

/// One native client session, as a [`Driver`] started it.
pub trait Session: Send + Sync + 'static {
    /// Its instance id (the registry lists the device under it).
    fn instance(&self) -> &str;
    /// Logs in; resolves once the login settled.
    fn login<'a>(
        &'a self,
        user: &'a str,
        usersig: &'a str,
    ) -> BoxFuture<'a, Result<(), LoginError>>;
    /// Resolves when the session ends by itself.
    fn ended(&mut self) -> BoxFuture<'_, Ended>;
    /// Logs out (a kicked session is not logged in any more: it may fail, and is ignored).
    fn logout(&self) -> BoxFuture<'_, ()>;
    /// Ends the session for good: its connection closes.
    fn destroy(&self) -> BoxFuture<'_, ()>;
}

/// Why a login failed: the SDK error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginError {
    pub code: u32,
    pub message: String,
}

/// How a session ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Kicked(KickReason),
    /// Not ready any more (e.g. its UserSig expired).
    NotReady,
    /// The session's events stopped: it was ended elsewhere.
    Gone,
}

/// The running devices, by instance id. Cheap to clone.
#[derive(Clone, Default)]
pub struct Devices {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Where this server listens (set by `run`): the devices connect there.
    server: OnceLock<SocketAddr>,
    /// The native client (set by `serve_with`, or a test).
    driver: OnceLock<Arc<dyn Driver>>,
    running: Mutex<HashMap<String, Device>>,
}

struct Device {
    user: String,
    platform: Platform,
    /// Cancelled to log the device out.
    stop: CancellationToken,
    /// Cancelled once the device ended and left `running`.
    done: CancellationToken,
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

    /// Plugs in the native client the devices run. The first one set stays.
    pub fn set_driver(&self, driver: Arc<dyn Driver>) {
        let _ = self.inner.driver.set(driver);
    }

    pub fn is_device(&self, instance: &str) -> bool {
        self.running().contains_key(instance)
    }

    pub fn list(&self) -> Vec<DeviceInfo> {
        let mut list: Vec<DeviceInfo> = self
            .running()
            .iter()
            .map(|(instance, d)| info(instance, d))
            .collect();
        list.sort_by(|a, b| (&a.user, &a.instance).cmp(&(&b.user, &b.instance)));
        list
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, Device>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a device for `user` on `platform` and logs it in; answers once the login
    /// settled. A task of its own owns the device from the start, so a request dropped
    /// midway leaves no device behind that nothing would end.
    async fn start(
        &self,
        state: &AppState,
        user: &str,
        platform: Platform,
    ) -> Result<DeviceInfo, (StatusCode, String)> {
        let Some(driver) = self.inner.driver.get() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "this server runs no native client: no demo devices (`timd serve --demo` \
                 runs them)"
                    .into(),
            ));
        };
        let Some(server) = self.inner.server.get().copied() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is not listening on a socket: no demo devices".into(),
            ));
        };
        let (session, stop, done) = {
            let mut running = self.running();
            if running.len() >= MAX_DEVICES {
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("at most {MAX_DEVICES} demo devices at once: log one out first"),
                ));
            }
            let sdkappid = state.apps().default_app().sdkappid;
            let session = driver.session(&format!("ws://{server}"), sdkappid, platform);
            let device = Device {
                user: user.to_owned(),
                platform,
                stop: CancellationToken::new(),
                done: CancellationToken::new(),
            };
            let tokens = (device.stop.clone(), device.done.clone());
            running.insert(session.instance().to_owned(), device);
            (session, tokens.0, tokens.1)
        };
        let info = DeviceInfo {
            instance: session.instance().to_owned(),
            user: user.to_owned(),
            platform,
        };
        let (reply, logged_in) = oneshot::channel();
        tokio::spawn(drive(
            self.clone(),
            state.clone(),
            session,
            info.clone(),
            (stop, done),
            reply,
        ));
        match logged_in.await {
            Ok(Ok(())) => Ok(info),
            Ok(Err(message)) => Err((StatusCode::BAD_GATEWAY, message)),
            Err(_) => Err((StatusCode::BAD_GATEWAY, "the device ended".to_owned())),
        }
    }

    /// Logs the device out and ends it; answers once it ended. `None` if no such device.
    async fn stop(&self, instance: &str) -> Option<DeviceInfo> {
        let (info, stop, done) = {
            let running = self.running();
            let d = running.get(instance)?;
            (info(instance, d), d.stop.clone(), d.done.clone())
        };
        stop.cancel();
        done.cancelled().await;
        Some(info)
    }
}

fn info(instance: &str, d: &Device) -> DeviceInfo {
    DeviceInfo {
        instance: instance.to_owned(),
        user: d.user.clone(),
        platform: d.platform,
    }
}

/// A device's life: log in (answering `reply`), then follow it until it is kicked, logged
/// out from the page or the server stops; then end it.
async fn drive(
    devices: Devices,
    state: AppState,
    mut session: Box<dyn Session>,
    device: DeviceInfo,
    (stop, done): (CancellationToken, CancellationToken),
    reply: oneshot::Sender<Result<(), String>>,
) {
    let DeviceInfo {
        instance,
        user,
        platform,
    } = device;
    let shutdown = state.shutdown_token().clone();
    let login = tokio::select! {
        login = login(&state, &*session, &user) => login,
        _ = shutdown.cancelled() => Err("the server is shutting down".to_owned()),
    };
    match login {
        Ok(()) => {
            tracing::info!(
                user,
                platform = platform.as_str(),
                instance,
                "demo device logged in"
            );
            let _ = reply.send(Ok(()));
        }
        Err(message) => {
            // Answered once the device is gone, as a logout is.
            end(&devices, &instance, &*session).await;
            done.cancel();
            let _ = reply.send(Err(message));
            return;
        }
    }
    tokio::select! {
            ended = session.ended() => {
                if let Ended::Kicked(reason) = ended {
                    tracing::info!(instance, reason = reason.as_str(), "demo device kicked out");
                }
            }
            _ = stop.cancelled() => {
                // A device kicked meanwhile is not logged in any more (2024): it ends all
                // the same.
                let _ = tokio::time::timeout(CALL_TIMEOUT, session.logout()).await;
                tracing::info!(instance, "demo device logged out");
            }
            _ = shutdown.cancelled() => {}
    }
    end(&devices, &instance, &*session).await;
    done.cancel();
}

/// Takes the device off the list and destroys its session.
async fn end(devices: &Devices, instance: &str, session: &dyn Session) {
    devices.running().remove(instance);
    let _ = tokio::time::timeout(CALL_TIMEOUT, session.destroy()).await;
}

/// Signs a UserSig for the device and logs it in, within [`CALL_TIMEOUT`].
async fn login(state: &AppState, session: &dyn Session, user: &str) -> Result<(), String> {
    // A UserSig issued in the second of a REST kick of the user would be refused.
    let app = state.apps().default_app();
    let kicked_at = state
        .backend()
        .kicked_at(app.sdkappid, user)
        .await
        .map_err(|e| format!("the device cannot log in now: {e}"))?;
    if let Some(kicked_at) = kicked_at.filter(|&k| k >= unix_now()) {
        crate::rest::kick::settle(kicked_at).await;
    }
    let usersig = tim_usersig::generate(
        app.sdkappid,
        app.key(),
        user,
        unix_now(),
        DEVICE_USERSIG_SECS,
    );
    match tokio::time::timeout(CALL_TIMEOUT, session.login(user, &usersig)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "the device's login failed: {} {}",
            e.code, e.message
        )),
        Err(_) => Err("the device's login did not settle in time".to_owned()),
    }
}

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    user: Option<String>,
    platform: Option<String>,
}

/// `GET /demo/devices`: every running demo device.
pub async fn list(State(demo): State<DemoState>) -> Response {
    no_store(Json(DeviceList {
        max: MAX_DEVICES,
        devices: demo.devices.list(),
    }))
}

/// `POST /demo/devices?user=U&platform=P`: starts a native device (P one of Android, iPhone,
/// iPad, Windows, Mac) logged in as U. Answers the [`DeviceInfo`] once it is logged in.
pub async fn start(
    State(demo): State<DemoState>,
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
    match demo.devices.start(&demo.app, &user, platform).await {
        Ok(info) => no_store(Json(info)),
        Err((status, message)) => error(status, message),
    }
}

/// `DELETE /demo/devices/{instance}`: logs the device out and ends it; answers its
/// [`DeviceInfo`] (404 if no such device runs).
pub async fn stop(State(demo): State<DemoState>, Path(instance): Path<String>) -> Response {
    match demo.devices.stop(&instance).await {
        Some(info) => no_store(Json(info)),
        None => error(StatusCode::NOT_FOUND, "no such demo device"),
    }
}
