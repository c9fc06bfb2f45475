//! `timd serve --demo`'s native demo devices: tim-client sessions, plugged into the server
//! library's demo routes as their [`Driver`] (the library keeps the routes and the
//! bookkeeping, and does not depend on the client). A device is a `tim_client::Client` on
//! the server's own `/ws`, so it behaves exactly as a real native instance would.

use tim_client::{Client, Event, Events, Handle, Platform};
use timd::demo::devices::{BoxFuture, Driver, Ended, LoginError, Session};

/// Starts each device as a tim-client session.
pub struct ClientDevices;

impl Driver for ClientDevices {
    fn session(&self, url: &str, sdkappid: u32, platform: Platform) -> Box<dyn Session> {
        let instance = tim_client::random_instance_id();
        let config = tim_client::Config::new(sdkappid, platform, instance.clone());
        let (handle, events) = Client::new(url, config).split();
        Box::new(ClientSession {
            instance,
            handle,
            events,
        })
    }
}

struct ClientSession {
    instance: String,
    handle: Handle,
    events: Events,
}

impl Session for ClientSession {
    fn instance(&self) -> &str {
        &self.instance
    }

    fn login<'a>(
        &'a self,
        user: &'a str,
        usersig: &'a str,
    ) -> BoxFuture<'a, Result<(), LoginError>> {
        Box::pin(async move {
            match self.handle.login(user, usersig).await {
                Ok(_) => Ok(()),
                Err(e) => Err(LoginError {
                    code: e.code,
                    message: e.message,
                }),
            }
        })
    }

    fn ended(&mut self) -> BoxFuture<'_, Ended> {
        Box::pin(async move {
            loop {
                match self.events.next().await {
                    None => return Ended::Gone,
                    Some(Event::Kicked(reason)) => return Ended::Kicked(reason),
                    Some(Event::NotReady) => return Ended::NotReady,
                    Some(_) => {}
                }
            }
        })
    }

    fn logout(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.handle.logout().await;
        })
    }

    /// Its driver task ends once the last handle is dropped (with this session).
    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.handle.destroy().await;
        })
    }
}
