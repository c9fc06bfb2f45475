//! The client suite's helpers: native clients against a real `timd` served in process
//! (`tim_test_support::Server`, shared with the server suite).
#![allow(dead_code, unused_imports)]

use std::future::Future;
use std::time::Duration;

use tim_client::{Client, Config, Event, KickReason, NetState, Platform};
use timd::policy::{LoginPolicy, LoginSettings};

pub use tim_test_support::{eventually, now, sig, EmbeddedProbe, Server, APP, KEY, WAIT};

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

/// Every event the server's frames so far have led to: a round trip with the server (every
/// frame it sent before its `pong` is then handled, see [`tim_client::Handle::round_trip`]),
/// then the queued events. A client without a connection (kicked, offline) has handled
/// everything it got: its queued events. This is how a test shows that nothing (more)
/// happened to `c`, without a quiet window that a late frame could miss.
pub async fn settled(c: &mut Client) -> Vec<Event> {
    if !c.round_trip().await {
        let status = c.status().await.expect("the client's task runs");
        assert!(
            !status.connected,
            "{}: no round trip on a live connection: {status:?}",
            c.instance()
        );
    }
    drain(c)
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
