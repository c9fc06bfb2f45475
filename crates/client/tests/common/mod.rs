//! A real `timd` on 127.0.0.1:0 (in process) and helpers to drive native clients against it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use tim_client::{Client, Config, Event, KickReason, NetState, Platform};
use timd::policy::{LoginPolicy, LoginSettings};
use timd::AppState;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const APP: u32 = 1_400_000_002;
pub const KEY: &str = "client-test-key";
/// Generous bound for anything that should happen "at once".
pub const WAIT: Duration = Duration::from_secs(3);
/// How long to watch for something that must *not* happen.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct Server {
    pub addr: SocketAddr,
    config: timd::Config,
    pub state: AppState,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(login: LoginSettings) -> Server {
        Server::start_with(|c| c.login = login).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut timd::Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = timd::Config::new(APP, KEY);
        config.data_dir = dir.path().join("data");
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, stop, task) = Server::serve(listener, config.clone());
        Server {
            addr,
            config,
            state,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn serve(
        listener: tokio::net::TcpListener,
        config: timd::Config,
    ) -> (
        AppState,
        oneshot::Sender<()>,
        JoinHandle<std::io::Result<()>>,
    ) {
        let state = AppState::new(config).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(timd::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        (state, stop, task)
    }

    /// Stops gracefully (sockets closed with 1012) and starts again on the same address
    /// and data directory, with an empty registry.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let (state, stop, task) = Server::serve(listener, self.config.clone());
        self.state = state;
        self.stop = Some(stop);
        self.task = Some(task);
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn client(&self, platform: Platform, instance: &str) -> Client {
        Client::new(&self.url(), Config::new(APP, platform, instance.into()))
    }

    /// A client logged in as `user`; its queued events (net state, ready) are drained.
    pub async fn online(&self, user: &str, platform: Platform, instance: &str) -> Client {
        let mut c = self.client(platform, instance);
        c.login(user, &sig(user))
            .await
            .unwrap_or_else(|e| panic!("{instance}: {e:?}"));
        drain(&mut c);
        c
    }

    /// `(instance, platform, attached)` of `user`'s slots, earliest first.
    pub fn slots(&self, user: &str) -> Vec<(String, Platform, bool)> {
        self.state
            .registry()
            .instances(user)
            .into_iter()
            .map(|i| (i.instance, i.platform, i.attached))
            .collect()
    }

    pub fn instances(&self, user: &str) -> Vec<String> {
        self.slots(user).into_iter().map(|s| s.0).collect()
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
        }
    }
}

pub fn settings(policy: LoginPolicy, web: u8, other: u8) -> LoginSettings {
    LoginSettings {
        web_instances: web,
        platform_instances: other,
        policy,
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A UserSig for `user` from the test app, valid for an hour.
pub fn sig(user: &str) -> String {
    tim_usersig::generate(APP, KEY, user, now(), 3600)
}

/// Every event already queued.
pub fn drain(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.try_next_event()).collect()
}

/// The next `KICKED_OUT`, within the wait bound, and the `SDK_NOT_READY` that must come
/// right after it (`tim-js-sdk`'s order).
pub async fn kicked(c: &mut Client) -> Option<KickReason> {
    let reason = match c.wait_for(WAIT, |e| matches!(e, Event::Kicked(_))).await {
        Some(Event::Kicked(r)) => r,
        _ => return None,
    };
    let next = c.wait_for(WAIT, |_| true).await;
    assert_eq!(
        next,
        Some(Event::NotReady),
        "SDK_NOT_READY right after KICKED_OUT {reason:?}"
    );
    Some(reason)
}

/// Events arriving within `QUIET` (for "nothing happens" checks).
pub async fn quiet_events(c: &mut Client) -> Vec<Event> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + QUIET;
    while let Ok(Some(e)) = tokio::time::timeout_at(end, c.next_event()).await {
        out.push(e);
    }
    out
}

/// Waits for `NET_STATE_CHANGE connected`, returning every event seen on the way.
pub async fn reconnected(c: &mut Client, within: Duration) -> Vec<Event> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, c.next_event()).await {
            Ok(Some(e)) => {
                let done = e == Event::NetState(NetState::Connected);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            _ => panic!(
                "{}: not reconnected within {within:?}; saw {seen:?}",
                c.instance()
            ),
        }
    }
}

/// Polls `cond` until true (or fails after the wait bound).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
