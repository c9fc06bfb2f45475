//! The client suite's helpers: native clients against a real `timd` served in process
//! (`tim_test_support::Server`, shared with the server suite).
#![allow(dead_code, unused_imports)]

use std::future::Future;
use std::time::Duration;

use tim_client::{Client, Config, Event, KickReason, NetState, Platform};
use timd::policy::{LoginPolicy, LoginSettings};

pub use tim_test_support::{eventually, now, sig, EmbeddedProbe, Server, APP, KEY, WAIT};

/// How long to watch for something that must *not* happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// The config tweak for `Server::start`: these login settings.
pub fn settings(policy: LoginPolicy, web: u8, other: u8) -> impl FnOnce(&mut timd::Config) {
    move |config| {
        config.login = LoginSettings {
            web_instances: web,
            platform_instances: other,
            policy,
        }
    }
}

/// Native clients of a test server.
pub trait Clients {
    /// A client of the test app as `platform` / `instance`, not logged in.
    fn client(&self, platform: Platform, instance: &str) -> Client;
    /// A client logged in as `user`; its queued events (net state, ready) are drained.
    fn online(
        &self,
        user: &str,
        platform: Platform,
        instance: &str,
    ) -> impl Future<Output = Client>;
}

impl Clients for Server {
    fn client(&self, platform: Platform, instance: &str) -> Client {
        Client::new(&self.url(), Config::new(APP, platform, instance.into()))
    }

    async fn online(&self, user: &str, platform: Platform, instance: &str) -> Client {
        let mut c = self.client(platform, instance);
        c.login(user, &sig(user))
            .await
            .unwrap_or_else(|e| panic!("{instance}: {e:?}"));
        drain(&mut c);
        c
    }
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
