//! The churn: one operation started every 1/rate seconds, in the order of [`CYCLE`], each a
//! task of its own that checks what it got. Every kind works on its own pool of users (an
//! operation waits for the previous one on its user, so they never mix); logins rotate over
//! the nodes, so in cluster mode the kicks cross nodes.
//!
//! The pools are sized so that what `timd` keeps per user reaches its bound during warm-up:
//! tombstones (64 per user) and ended sessions (32 per user) live as long as a ticket could
//! (24 h), so a pool of fresh users would make those maps climb for a day, bounded but not
//! flat within the run. Kicked users are few and kicked often; instance ids repeat per user,
//! as a device's or a restored tab's do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tim_client::{Client, Config, Event, Platform};
use tim_proto::{KickReason, ServerFrame};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::steady::Steady;
use super::target::Target;
use crate::sys::{now_secs, sig, APP, KEY};

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Log in, then log out.
    LoginLogout,
    /// Three Web logins of one user over a limit of two: the earliest gets `multipleAccount`.
    LimitKick,
    /// Log in, then the admin kicks the user over REST: `REST_API_Kick`.
    RestKick,
    /// A steady session's socket dropped (no close frame): it must resume, unkicked.
    DropResume,
    /// Malformed JSON and a binary frame on a fresh socket: `error` frames, socket kept.
    BadFrame,
    /// A UserSig signed with the wrong key: 70009 (or 70050 once that pair is rate limited).
    BadUserSig,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::LoginLogout,
        Kind::LimitKick,
        Kind::RestKick,
        Kind::DropResume,
        Kind::BadFrame,
        Kind::BadUserSig,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::LoginLogout => "login+logout",
            Kind::LimitKick => "instance-limit kick",
            Kind::RestKick => "REST kick",
            Kind::DropResume => "drop+resume",
            Kind::BadFrame => "bad frames",
            Kind::BadUserSig => "forged UserSig",
        }
    }

    /// Users in this kind's pool (none: it works on no user of its own). At 20 ops/s a
    /// limit-kick or REST-kick user is kicked every 8 s, so its 64 tombstones are reached in
    /// about 9 minutes.
    fn pool(self) -> usize {
        match self {
            Kind::LoginLogout => 600,
            Kind::LimitKick => 16,
            Kind::RestKick => 8,
            Kind::BadUserSig => 100,
            Kind::DropResume | Kind::BadFrame => 0,
        }
    }
}

/// One second of the mix at 20 ops/s: 15 logins (+ 3 forged), 1 REST kick, 2 limit kicks,
/// 3 drops with resumes, 3 malformed sockets.
pub const CYCLE: [Kind; 20] = {
    use Kind::*;
    [
        LoginLogout,
        LimitKick,
        DropResume,
        BadFrame,
        BadUserSig,
        LoginLogout,
        RestKick,
        LoginLogout,
        DropResume,
        BadFrame,
        LoginLogout,
        LimitKick,
        BadUserSig,
        LoginLogout,
        DropResume,
        LoginLogout,
        BadFrame,
        LoginLogout,
        BadUserSig,
        LoginLogout,
    ]
};

/// How long a kick or a resume may take before it counts as missing.
const BOUND: Duration = Duration::from_secs(15);

/// What the run saw, shared by every task.
#[derive(Default)]
pub struct Tally {
    done: [AtomicU64; 6],
    failed: [AtomicU64; 6],
    /// Operations not started because too many were still in flight.
    behind: AtomicU64,
    /// Kicks the mix did not ask for (a steady session, a survivor of a limit kick, ...).
    pub spurious: AtomicU64,
    /// Steady sessions that did not come back.
    pub lost: AtomicU64,
    pub renewals: AtomicU64,
    /// Errors outside the mix's operations (a steady session's final logout).
    pub errors: AtomicU64,
    /// The first few things that went wrong, for the report.
    notes: Mutex<Vec<String>>,
}

impl Tally {
    fn slot(kind: Kind) -> usize {
        Kind::ALL.iter().position(|k| *k == kind).expect("kind")
    }

    /// Something went wrong that the mix did not ask for.
    pub fn note(&self, what: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.len() < 20 {
            println!("  ! {what}");
            notes.push(what);
        }
    }

    fn record(&self, kind: Kind, result: Result<(), String>) {
        let i = Tally::slot(kind);
        self.done[i].fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            self.failed[i].fetch_add(1, Ordering::Relaxed);
            self.note(format!("{}: {e}", kind.name()));
        }
    }

    /// Prints the totals; whether the run was clean. With `check_rate`, a mix that fell
    /// behind its rate fails too (a smoke run only reports it).
    pub fn print(&self, took: Duration, check_rate: bool) -> bool {
        println!("  totals over {} s:", took.as_secs());
        let mut unexpected = self.errors.load(Ordering::Relaxed);
        for kind in Kind::ALL {
            let i = Tally::slot(kind);
            let (done, failed) = (
                self.done[i].load(Ordering::Relaxed),
                self.failed[i].load(Ordering::Relaxed),
            );
            unexpected += failed;
            println!(
                "    {:<20} {done:>8} done, {failed} unexpected",
                kind.name()
            );
        }
        let renewals = self.renewals.load(Ordering::Relaxed);
        let behind = self.behind.load(Ordering::Relaxed);
        let done: u64 = self.done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
        let started = done + behind;
        let spurious = self.spurious.load(Ordering::Relaxed);
        let lost = self.lost.load(Ordering::Relaxed);
        println!("    UserSig renewals     {renewals:>8}");
        println!(
            "    {done} operations done, {:.1}/s; {behind} not started (too many in flight)",
            done as f64 / took.as_secs_f64().max(1.0)
        );
        println!(
            "    lost sessions: {lost}, spurious kicks: {spurious}, unexpected errors: {unexpected}"
        );
        // A mix that fell behind its rate did not soak what it claims to. A smoke run on a
        // busy machine (CI's debug builds) may: it says so, and only checks the rest.
        let on_rate = behind * 100 <= started;
        if !on_rate {
            println!(
                "    the mix fell behind its rate: more than 1% of its operations not started{}",
                if check_rate {
                    ""
                } else {
                    " (a smoke run: reported, not a failure)"
                }
            );
        }
        lost == 0 && spurious == 0 && unexpected == 0 && (on_rate || !check_rate)
    }
}

/// Everything an operation needs.
pub struct Mix {
    urls: Vec<String>,
    addrs: Vec<SocketAddr>,
    steady: Steady,
    tally: Arc<Tally>,
    /// Operations started per kind (picks the user and the node).
    counters: [AtomicUsize; 6],
    /// One lock per user of each pool: an operation holds its user's for its duration.
    users: [Vec<tokio::sync::Mutex<()>>; 6],
}

impl Mix {
    pub fn new(target: &Target, steady: Steady, tally: Arc<Tally>) -> Mix {
        Mix {
            urls: target.urls(),
            addrs: target.addrs(),
            steady,
            tally,
            counters: Default::default(),
            users: Kind::ALL.map(|k| (0..k.pool()).map(|_| Default::default()).collect()),
        }
    }

    /// Starts one operation every 1/rate s until `end`, then waits for those in flight.
    pub async fn run(self, rate: u32, end: Instant) {
        let mix = Arc::new(self);
        // Enough for a few seconds of slow kicks; beyond it the mix is behind (counted).
        let in_flight = Arc::new(Semaphore::new(256));
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n = 0usize;
        while Instant::now() < end {
            tick.tick().await;
            let kind = CYCLE[n % CYCLE.len()];
            n += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                mix.tally.behind.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let mix = mix.clone();
            tokio::spawn(async move {
                let result = mix.one(kind).await;
                mix.tally.record(kind, result);
                drop(permit);
            });
        }
        let _ = in_flight.acquire_many(256).await;
    }

    async fn one(&self, kind: Kind) -> Result<(), String> {
        let n = self.counters[Tally::slot(kind)].fetch_add(1, Ordering::Relaxed);
        let pool = kind.pool().max(1);
        let locks = &self.users[Tally::slot(kind)];
        let _user_lock = match locks.get(n % pool) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let user = format!("soak-{:?}-{}", kind, n % pool).to_lowercase();
        // The n-th use of this user: its instance ids repeat every 4 uses.
        let reuse = n / pool % 4;
        match kind {
            Kind::LoginLogout => self.login_logout(&user, n, reuse).await,
            Kind::LimitKick => self.limit_kick(&user, n, reuse).await,
            Kind::RestKick => self.rest_kick(&user, n, reuse).await,
            Kind::DropResume => self.steady.drop_and_resume(n).await,
            Kind::BadFrame => self.bad_frames(n).await,
            Kind::BadUserSig => self.forged(&user, n).await,
        }
    }

    fn url(&self, n: usize) -> &str {
        &self.urls[n % self.urls.len()]
    }

    async fn logged_in(&self, user: &str, node: usize, instance: String) -> Result<Client, String> {
        let c = Client::new(self.url(node), Config::new(APP, Platform::Web, instance));
        c.login(user, &sig(user))
            .await
            .map_err(|e| format!("login {user}: {} {}", e.code, e.message))?;
        Ok(c)
    }

    async fn login_logout(&self, user: &str, n: usize, reuse: usize) -> Result<(), String> {
        let mut c = self.logged_in(user, n, format!("ll-{reuse}")).await?;
        c.logout()
            .await
            .map_err(|e| format!("logout {user}: {} {}", e.code, e.message))?;
        self.no_kick(&mut c, user);
        Ok(())
    }

    async fn limit_kick(&self, user: &str, n: usize, reuse: usize) -> Result<(), String> {
        let mut first = self.logged_in(user, n, format!("lk-{reuse}-a")).await?;
        let mut second = self.logged_in(user, n + 1, format!("lk-{reuse}-b")).await?;
        let mut third = self.logged_in(user, n + 2, format!("lk-{reuse}-c")).await?;
        let kicked = first
            .wait_for(BOUND, |e| matches!(e, Event::Kicked(_)))
            .await;
        let result = match kicked {
            Some(Event::Kicked(KickReason::MultipleAccount)) => Ok(()),
            other => Err(format!(
                "{user}: the earliest got {other:?}, not multipleAccount"
            )),
        };
        for c in [&mut second, &mut third] {
            c.logout()
                .await
                .map_err(|e| format!("logout {user}: {} {}", e.code, e.message))?;
            self.no_kick(c, user);
        }
        result
    }

    async fn rest_kick(&self, user: &str, n: usize, reuse: usize) -> Result<(), String> {
        let mut c = self.logged_in(user, n, format!("rk-{reuse}")).await?;
        let addr = self.addrs[(n + 1) % self.addrs.len()];
        let admin = "administrator";
        let path = format!(
            "/v4/im_open_login_svc/kick?sdkappid={APP}&identifier={admin}&usersig={}&random={n}&contenttype=json",
            tim_usersig::generate(APP, KEY, admin, now_secs(), 86_400)
        );
        let body = serde_json::json!({ "UserID": user }).to_string();
        let answer = crate::http::post(addr, &path, &body)
            .await
            .ok_or_else(|| format!("REST kick {user}: no answer"))?;
        let json: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("REST kick {user}: {e}"))?;
        if json["ErrorCode"] != 0 {
            return Err(format!("REST kick {user}: {json}"));
        }
        match c.wait_for(BOUND, |e| matches!(e, Event::Kicked(_))).await {
            Some(Event::Kicked(KickReason::RestApi)) => Ok(()),
            other => Err(format!("{user}: got {other:?}, not REST_API_Kick")),
        }
    }

    async fn bad_frames(&self, n: usize) -> Result<(), String> {
        let url = format!("{}/ws", self.url(n));
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        for bad in [
            Message::text(r#"{"login":{"seq":1,"sdkappid":"#),
            Message::binary(vec![0xde, 0xad]),
        ] {
            ws.send(bad).await.map_err(|e| format!("send: {e}"))?;
            let answer = tokio::time::timeout(BOUND, ws.next())
                .await
                .map_err(|_| "no answer to a bad frame".to_owned())?;
            match answer {
                Some(Ok(Message::Text(t))) => match serde_json::from_str(t.as_str()) {
                    Ok(ServerFrame::Error(_)) => {}
                    other => return Err(format!("bad frame answered {other:?}")),
                },
                other => return Err(format!("bad frame answered {other:?}")),
            }
        }
        let _ = ws.close(None).await;
        Ok(())
    }

    async fn forged(&self, user: &str, n: usize) -> Result<(), String> {
        let c = Client::new(
            self.url(n),
            Config::new(APP, Platform::Web, format!("bad-{n}")),
        );
        let forged = tim_usersig::generate(APP, "not-the-key", user, now_secs(), 3600);
        match c.login(user, &forged).await {
            Err(e) if e.code == 70009 || e.code == 70050 => Ok(()),
            Err(e) => Err(format!("{user}: {} {}", e.code, e.message)),
            Ok(_) => Err(format!("{user}: a forged UserSig logged in")),
        }
    }

    /// A client that was not meant to be kicked: any kick in its events is spurious.
    fn no_kick(&self, c: &mut Client, user: &str) {
        while let Some(e) = c.try_next_event() {
            if let Event::Kicked(reason) = e {
                self.tally.spurious.fetch_add(1, Ordering::Relaxed);
                self.tally.note(format!("{user}: spurious kick {reason:?}"));
            }
        }
    }
}
