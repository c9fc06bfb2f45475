//! `tim-bench kick`: kick delivery latency on one timd, and the pair of instances that
//! kick each other (shared with the cluster bench, which puts the two on different nodes).

use std::time::{Duration, Instant};

use clap::Args;
use tim_client::{Client, Config, Event, OpOk, Platform};

use crate::stats::{print_summary, summary};
use crate::sys::sig;
use crate::timd::{Common, Timd};

#[derive(Args)]
pub struct KickArgs {
    #[command(flatten)]
    common: Common,
    /// Kicks to measure (after the warm-up).
    #[arg(long, default_value_t = 1000)]
    kicks: usize,
    /// Kicks before measuring (connections, caches, the account row).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Pairs of instances kicking each other at the same time (1: one kick at a time).
    #[arg(long, default_value_t = 1)]
    pairs: usize,
}

/// One kick's figures: login frame sent -> KICKED_OUT in the old instance, and login frame
/// sent -> the new login resolved.
pub struct KickSample {
    pub delivery: Duration,
    pub login: Duration,
}

/// Two Web instances of one user (limit 1) taking turns: each login kicks the other. `a`
/// connects to `url_a`, `b` to `url_b` (the same URL for a same-node kick).
pub struct KickPair {
    user: String,
    usersig: String,
    a: Client,
    b: Client,
    round: usize,
}

impl KickPair {
    /// Logs `a` in (the first login kicks no one).
    pub async fn new(url_a: &str, url_b: &str, user: String) -> KickPair {
        let usersig = sig(&user);
        let mut a = Client::new(
            url_a,
            Config::new(crate::sys::APP, Platform::Web, format!("{user}-a")),
        );
        let b = Client::new(
            url_b,
            Config::new(crate::sys::APP, Platform::Web, format!("{user}-b")),
        );
        a.login(&user, &usersig).await.expect("first login");
        while a.try_next_event().is_some() {}
        KickPair {
            user,
            usersig,
            a,
            b,
            round: 0,
        }
    }

    /// The idle instance logs in and kicks the other; what went wrong otherwise.
    pub async fn kick(&mut self) -> Result<KickSample, String> {
        let round = self.round;
        self.round += 1;
        let (new, old) = if round.is_multiple_of(2) {
            (&mut self.b, &mut self.a)
        } else {
            (&mut self.a, &mut self.b)
        };
        let result = new.login(&self.user, &self.usersig).await;
        let resolved = Instant::now();
        if result != Ok(OpOk::Login { repeat: false }) {
            return Err(format!("{} login {round}: {result:?}", self.user));
        }
        let sent = new.last_login_sent().expect("a login frame went out");
        let kicked = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some((at, event)) = old.next_event_at().await {
                if matches!(event, Event::Kicked(_)) {
                    return Some(at);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        while new.try_next_event().is_some() {}
        let at = kicked
            .ok_or_else(|| format!("{} round {round}: no KICKED_OUT within 5 s", self.user))?;
        Ok(KickSample {
            delivery: at.saturating_duration_since(sent),
            login: resolved.saturating_duration_since(sent),
        })
    }
}

pub async fn kick(args: KickArgs) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut timd = Timd::new(
        &args.common,
        dir.path(),
        &["--web-instances", "1", "--login-policy", "dual"],
    );
    timd.start().await;
    let url = timd.url();
    let pairs = args.pairs.max(1);
    let per_pair = (args.kicks + args.warmup).div_ceil(pairs);
    let warmup_per_pair = args.warmup.div_ceil(pairs);
    println!(
        "kick: timd {} ({}), {pairs} pair(s) of Web instances with a limit of 1, {} kicks + {} warm-up",
        timd.binary.display(),
        timd.addr,
        args.kicks,
        args.warmup
    );
    let tasks: Vec<_> = (0..pairs)
        .map(|p| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut pair = KickPair::new(&url, &url, format!("kick-{p}")).await;
                let (mut kicks, mut logins, mut wrong) = (Vec::new(), Vec::new(), 0);
                for round in 0..per_pair {
                    match pair.kick().await {
                        Ok(s) if round >= warmup_per_pair => {
                            kicks.push(s.delivery);
                            logins.push(s.login);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("{e}");
                            wrong += 1;
                        }
                    }
                }
                (kicks, logins, wrong)
            })
        })
        .collect();
    let mut kicks = Vec::new();
    let mut logins = Vec::new();
    let mut wrong = 0;
    for t in tasks {
        let (k, l, w) = t.await.expect("pair task");
        kicks.extend(k);
        logins.extend(l);
        wrong += w;
    }
    print_summary(
        "kick delivery (login frame sent -> KICKED_OUT in the old instance)",
        &mut kicks,
    );
    print_summary(
        "login round trip (login frame sent -> login resolved)",
        &mut logins,
    );
    let p99 = if kicks.is_empty() {
        f64::NAN
    } else {
        summary(&mut kicks).2
    };
    println!(
        "kick p99 {p99:.3} ms: {} (target < 5 ms); unexpected events: {wrong}",
        if p99 < 5.0 { "OK" } else { "OVER TARGET" }
    );
    wrong == 0
}
