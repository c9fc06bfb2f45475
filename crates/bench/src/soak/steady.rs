//! The sessions that stay: logged in at the start, on every node in turn, with UserSigs that
//! expire after `usersig_secs` so the SDK renews them (its `getUserSig` path) all run long.
//! The mix drops their sockets; each must resume, and none may ever be kicked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tim_client::{Client, Config, Event, Handle, Options, Platform, RenewFn};
use tokio::sync::Semaphore;

use super::mix::Tally;
use crate::sys::{now_secs, APP, KEY};

/// How long a dropped session may take to be back connected.
const RESUME_BOUND: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct Steady {
    handles: Arc<Vec<(String, Handle)>>,
}

fn usersig(user: &str, secs: u64) -> String {
    tim_usersig::generate(APP, KEY, user, now_secs(), secs)
}

impl Steady {
    /// Logs `n` steady users in, 50 at a time, user `i` on node `i % urls.len()`; a task
    /// per session counts its renewals and any kick (all spurious).
    pub async fn log_in(
        urls: &[String],
        n: usize,
        usersig_secs: u64,
        tally: &Arc<Tally>,
    ) -> Steady {
        let gate = Arc::new(Semaphore::new(50));
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (url, gate, tally) =
                    (urls[i % urls.len()].clone(), gate.clone(), tally.clone());
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await.expect("semaphore");
                    let user = format!("soak-steady-{i}");
                    let renew: RenewFn = {
                        let (user, tally) = (user.clone(), tally.clone());
                        Arc::new(move || {
                            tally.renewals.fetch_add(1, Ordering::Relaxed);
                            let fresh = usersig(&user, usersig_secs);
                            Box::pin(async move { Some(fresh) })
                        })
                    };
                    let options = Options {
                        renew: Some(renew),
                        ..Options::default()
                    };
                    let c = Client::with_options(
                        &url,
                        Config::new(APP, Platform::Web, format!("steady-{i}")),
                        options,
                    );
                    if let Err(e) = c.login(&user, &usersig(&user, usersig_secs)).await {
                        panic!("steady login {user}: {} {}", e.code, e.message);
                    }
                    let (handle, mut events) = c.split();
                    let watch = user.clone();
                    tokio::spawn(async move {
                        while let Some(e) = events.next().await {
                            if let Event::Kicked(reason) = e {
                                tally.spurious.fetch_add(1, Ordering::Relaxed);
                                tally.note(format!("steady {watch}: kicked {reason:?}"));
                            }
                        }
                    });
                    (user, handle)
                })
            })
            .collect();
        let mut handles = Vec::with_capacity(n);
        for t in tasks {
            handles.push(t.await.expect("steady login task"));
        }
        Steady {
            handles: Arc::new(handles),
        }
    }

    /// Drops the socket of steady session `n % count` and waits until it is back connected.
    pub async fn drop_and_resume(&self, n: usize) -> Result<(), String> {
        if self.handles.is_empty() {
            return Ok(());
        }
        let (user, handle) = &self.handles[n % self.handles.len()];
        handle.drop_connection();
        // The drop is a command to the client's task: let it happen before looking.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let deadline = tokio::time::Instant::now() + RESUME_BOUND;
        loop {
            match handle.status().await {
                Some(s) if s.connected && s.ready => return Ok(()),
                Some(s) if s.kicked.is_some() => {
                    return Err(format!("steady {user} kicked on resume: {:?}", s.kicked))
                }
                None => return Err(format!("steady {user}: client task gone")),
                Some(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("steady {user} not back within {RESUME_BOUND:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// At the end: every steady session must still be logged in and connected (or count as
    /// lost), then logs out.
    pub async fn check_and_log_out(&self, tally: &Tally) {
        for (user, handle) in self.handles.iter() {
            let deadline = tokio::time::Instant::now() + RESUME_BOUND;
            let status = loop {
                let s = handle.status().await;
                let back = s.as_ref().is_some_and(|s| s.connected && s.ready);
                if back || tokio::time::Instant::now() >= deadline {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            match status {
                Some(s) if s.connected && s.ready && s.kicked.is_none() => {
                    if let Err(e) = handle.logout().await {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        tally.note(format!("steady {user}: logout {} {}", e.code, e.message));
                    }
                }
                other => {
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    tally.note(format!("steady {user} lost: {other:?}"));
                }
            }
        }
    }
}
