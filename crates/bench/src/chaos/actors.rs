//! Who acts during a chaos run, each writing what it did and saw into the shared log:
//! SDK instances (native clients with the SDK's session core) logging in and out, dropping
//! their connections and resuming; an admin sending REST kicks; and a ticket thief, who keeps
//! the tickets of raw sessions whose end was acknowledged and tries to resume them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tim_client::{Client, Config, Event, Handle};
use tim_proto::{ClientFrame, Login, NetState, Platform, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

use super::history::{Entry, Op};
use crate::sys::{now_secs, APP, KEY};

/// The run's log: every actor appends to it, stamped with the time since the run started.
pub struct Log {
    start: Instant,
    entries: Mutex<Vec<Entry>>,
}

impl Log {
    pub fn new() -> Log {
        Log {
            start: Instant::now(),
            entries: Mutex::new(Vec::new()),
        }
    }

    pub fn push(&self, op: Op) {
        self.push_at(Instant::now(), op);
    }

    pub fn push_at(&self, when: Instant, op: Op) {
        let at = when.saturating_duration_since(self.start);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry { at, op });
    }

    /// Everything logged so far, in time order.
    pub fn sorted(&self) -> Vec<Entry> {
        let mut v = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v.sort_by_key(|e| e.at);
        v
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A small xorshift generator per actor (no shared state, no crate).
pub struct Rng(u64);

impl Rng {
    /// The seed is mixed first (splitmix64; xorshift's state must not be zero): `seed | 1`
    /// alone made seeds 2k and 2k + 1 run the same schedule.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

pub fn user_name(user: usize) -> String {
    format!("chaos-{user}")
}

/// One SDK instance's life until `end`: logs in (sometimes with the UserSig it got at the
/// start, which a REST kick may have revoked), stays, drops its connection (it must resume),
/// logs out. Its events go to the log as they happen; returns the handle, still logged in or
/// not, for the final check.
pub async fn instance(
    log: Arc<Log>,
    inst: usize,
    user: usize,
    platform: Platform,
    url: String,
    end: Instant,
    seed: u64,
) -> Handle {
    let name = user_name(user);
    let client = Client::new(&url, Config::new(APP, platform, format!("chaos-{inst}")));
    let (handle, mut events) = client.split();
    let pump_log = log.clone();
    tokio::spawn(async move {
        while let Some((when, event)) = events.next_at().await {
            let op = match event {
                Event::Kicked(reason) => Op::Kicked { inst, reason },
                Event::NotReady => Op::NotReady { inst },
                Event::NetState(state) => Op::Net {
                    inst,
                    connected: state == NetState::Connected,
                },
                _ => continue,
            };
            pump_log.push_at(when, op);
        }
    });
    let mut rng = Rng::new(seed);
    let first_sig_time = now_secs();
    let first_sig = tim_usersig::generate(APP, KEY, &name, first_sig_time, 86_400);
    while Instant::now() < end {
        tokio::time::sleep(rng.millis(200, 1_500)).await;
        let ready = handle.status().await.is_some_and(|s| s.ready);
        if !ready {
            // A third of the logins use the UserSig of the start: refused once a REST kick
            // of the user revoked it (70001), which is the rule under test.
            let (sig, sig_time) = if rng.below(3) == 0 {
                (first_sig.clone(), first_sig_time)
            } else {
                let t = now_secs();
                (tim_usersig::generate(APP, KEY, &name, t, 86_400), t)
            };
            log.push(Op::LoginSent { inst, sig_time });
            match handle.login(&name, &sig).await {
                Ok(_) => log.push(Op::LoginOk { inst }),
                Err(e) => log.push(Op::LoginFailed { inst, code: e.code }),
            }
        } else {
            match rng.below(10) {
                0..=1 => {
                    let _ = handle.logout().await;
                    log.push(Op::LoggedOut { inst });
                }
                2..=3 => handle.drop_connection(),
                _ => {}
            }
        }
    }
    handle
}

/// The admin: a REST kick of a random user through a random node every 1.5–4 s.
pub async fn admin(log: Arc<Log>, nodes: Vec<SocketAddr>, users: usize, end: Instant, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(rng.millis(1_500, 4_000)).await;
        let user = rng.below(users as u64) as usize;
        let node = nodes[rng.below(nodes.len() as u64) as usize];
        n += 1;
        let wall = now_secs();
        log.push(Op::KickSent { user, wall });
        if rest_kick(node, &user_name(user), n).await {
            log.push(Op::KickAck { user, wall });
        }
    }
}

/// A REST kick; whether it was acknowledged (`ErrorCode` 0).
async fn rest_kick(node: SocketAddr, user: &str, random: u64) -> bool {
    let admin = "administrator";
    let path = format!(
        "/v4/im_open_login_svc/kick?sdkappid={APP}&identifier={admin}&usersig={}&random={random}&contenttype=json",
        tim_usersig::generate(APP, KEY, admin, now_secs(), 86_400)
    );
    let body = serde_json::json!({ "UserID": user }).to_string();
    let Some(answer) = crate::http::post(node, &path, &body).await else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&answer).is_ok_and(|j| j["ErrorCode"] == 0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const RAW_WAIT: Duration = Duration::from_secs(3);

async fn raw_connect(node: SocketAddr) -> Option<Ws> {
    let url = format!("ws://{node}/ws");
    let ws = tokio::time::timeout(RAW_WAIT, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .ok()?
        .ok()?
        .0;
    Some(ws)
}

async fn raw_send(ws: &mut Ws, frame: &ClientFrame) -> Option<()> {
    let text = serde_json::to_string(frame).ok()?;
    ws.send(Message::text(text)).await.ok()
}

/// The next frame the server sends (pings answered), within [`RAW_WAIT`].
async fn raw_recv(ws: &mut Ws) -> Option<ServerFrame> {
    let deadline = tokio::time::Instant::now() + RAW_WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        let Message::Text(text) = msg else {
            continue;
        };
        match serde_json::from_str::<ServerFrame>(text.as_str()).ok()? {
            ServerFrame::Ping => raw_send(ws, &ClientFrame::Pong).await?,
            frame => return Some(frame),
        }
    }
}

/// The thief: every 1–2 s either makes a raw session and ends it (a logout answered
/// `logout_ok`, or a REST kick acknowledged), keeping its ticket, or presents one of the kept
/// tickets to a random node. Any `resume_ok` after the end was acknowledged breaks a rule.
pub async fn thief(log: Arc<Log>, nodes: Vec<SocketAddr>, end: Instant, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut dead: Vec<(usize, String)> = Vec::new();
    let mut made = 0usize;
    while Instant::now() < end {
        tokio::time::sleep(rng.millis(1_000, 2_000)).await;
        let node = nodes[rng.below(nodes.len() as u64) as usize];
        if dead.is_empty() || rng.below(2) == 0 {
            made += 1;
            if let Some(ticket) = end_a_session(&log, node, made, rng.below(2) == 0).await {
                dead.push((made, ticket));
            }
        } else {
            let (id, ticket) = &dead[rng.below(dead.len() as u64) as usize];
            if let Some(accepted) = try_resume(node, ticket).await {
                log.push(Op::ResumeAnswered {
                    ticket: *id,
                    accepted,
                });
            }
        }
    }
}

/// A raw Web session of a fresh user, ended by logout or by a REST kick; its ticket once the
/// end was acknowledged (None if anything failed: a fault may be running).
async fn end_a_session(log: &Log, node: SocketAddr, id: usize, logout: bool) -> Option<String> {
    let user = format!("chaos-thief-{id}");
    let mut ws = raw_connect(node).await?;
    raw_send(
        &mut ws,
        &ClientFrame::Login(Login {
            seq: 1,
            sdkappid: APP,
            user: user.clone(),
            usersig: tim_usersig::generate(APP, KEY, &user, now_secs(), 86_400),
            platform: Platform::Web,
            instance: format!("thief-{id}"),
        }),
    )
    .await?;
    let ticket = match raw_recv(&mut ws).await? {
        ServerFrame::LoginOk(ok) => ok.ticket,
        _ => return None,
    };
    if logout {
        raw_send(&mut ws, &ClientFrame::Logout { seq: 2 }).await?;
        match raw_recv(&mut ws).await? {
            ServerFrame::LogoutOk { .. } => {}
            _ => return None,
        }
    } else if !rest_kick(node, &user, id as u64).await {
        return None;
    }
    log.push(Op::TicketEnded { ticket: id });
    let _ = ws.close(None).await;
    Some(ticket)
}

/// Presents `ticket` on a fresh socket: Some(true) for `resume_ok`, Some(false) for a
/// refusal (`kicked`, `error`), None when nothing came back (a fault).
async fn try_resume(node: SocketAddr, ticket: &str) -> Option<bool> {
    let mut ws = raw_connect(node).await?;
    raw_send(
        &mut ws,
        &ClientFrame::Resume {
            seq: 1,
            ticket: ticket.to_owned(),
        },
    )
    .await?;
    let answer = match raw_recv(&mut ws).await? {
        ServerFrame::ResumeOk { .. } => Some(true),
        ServerFrame::Kicked { .. } => Some(false),
        // 70169 / 1013 (Redis unreachable) says nothing about the ticket.
        ServerFrame::Error(e) if e.code == 70169 => None,
        ServerFrame::Error(_) => Some(false),
        _ => None,
    };
    let _ = ws.close(None).await;
    answer
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn neighbouring_seeds_run_different_schedules() {
        let draws = |seed: u64| {
            let mut r = Rng::new(seed);
            (0..8).map(|_| r.below(1_000)).collect::<Vec<_>>()
        };
        for seed in 0..64 {
            assert_ne!(
                draws(seed),
                draws(seed + 1),
                "seeds {seed} and {}",
                seed + 1
            );
            assert_eq!(draws(seed), draws(seed), "a seed replays");
        }
    }
}
