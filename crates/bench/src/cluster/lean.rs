//! The lean load generator (`tim-bench cluster-worker --lean`): the same share of users and
//! the same stdin commands as the full client process (`worker.rs`), but each session is one
//! small tokio task over a raw socket (`wire.rs`) instead of a `tim-client` with the SDK's
//! session core: it logs in with its UserSig, answers the server's `"ping"` with `"pong"`
//! (the only heartbeat the protocol needs), and after a drop reconnects with the SDK's
//! backoff (full jitter in [0.5 s, min(20 s, 0.5 s × 2^(n+1))]) and resumes with its ticket,
//! logging in again only if the resume is refused. What a session keeps between frames: its
//! ticket, a sequence number and the socket; the UserSig is made again when needed. So the
//! machine's memory goes to the server side, which is what a hold run measures.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tim_proto::{
    ClientFrame, Login, Platform, ServerFrame, ERR_SERVER_TIMEOUT, ERR_USERSIG_RATE_LIMITED,
    MAX_FRAME_BYTES,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::wire::{self, Frame};
use super::worker::WorkerArgs;
use crate::sys::{rss_of, sig, APP};

/// Initial login attempts before a session gives up (as the full client process).
const LOGIN_TRIES: u32 = 6;

/// What one process's sessions share: where to connect, and the counters the commands read.
struct Shared {
    nodes: Vec<SocketAddr>,
    binds: Vec<IpAddr>,
    prefix: String,
    first: usize,
    base: Instant,
    /// ns after `base` (+1) of the last `mark`.
    mark: AtomicU64,
    /// Per session: ns after `base` (+1) when it was last back up since the mark (0: not).
    back_at: Vec<AtomicU64>,
    connected: AtomicUsize,
    relogins: AtomicUsize,
    kicks: AtomicUsize,
    errors: AtomicUsize,
    /// Resumes and logins put off (70169, 70050): tried again later with the same ticket.
    put_off: AtomicUsize,
    ready_ok: AtomicUsize,
    ready_failed: AtomicUsize,
}

/// What the session last asked and is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Login(u32),
    Resume(u32),
    Nothing,
}

/// What a text frame from the server means to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do (`pong`, an answer to something else, a frame it does not know).
    Ignore,
    /// The server's heartbeat: answer `"pong"`.
    Pong,
    /// Logged in (with the new ticket) or resumed (`None`).
    Up(Option<String>),
    /// The resume was refused (ticket unknown, ended): log in again with the UserSig.
    ResumeRefused(u32),
    /// The resume or login was put off, not refused (the node's Redis unreachable or
    /// saturated: 70169, close 1013 follows; a login rate: 70050): keep the ticket, close,
    /// and try again after the longer backoff of a refusal, as the SDK does.
    PutOff(u32),
    /// The login was refused: close and try again later.
    LoginRefused(u32),
    /// An error not answering our request (e.g. a rate limit before a close).
    Error(u32),
    Kicked(&'static str),
}

/// The protocol, as far as a held session needs it (docs/protocol.md).
pub fn on_text(payload: &[u8], waiting: Waiting) -> Step {
    let Ok(frame) = serde_json::from_slice::<ServerFrame>(payload) else {
        // Unknown frames are skipped, as the SDK does.
        return Step::Ignore;
    };
    match (frame, waiting) {
        (ServerFrame::Ping, _) => Step::Pong,
        (ServerFrame::Error(e), Waiting::Resume(seq) | Waiting::Login(seq))
            if e.seq == Some(seq)
                && (e.code == ERR_SERVER_TIMEOUT || e.code == ERR_USERSIG_RATE_LIMITED) =>
        {
            Step::PutOff(e.code)
        }
        (ServerFrame::LoginOk(ok), Waiting::Login(seq)) if ok.seq == seq => {
            Step::Up(Some(ok.ticket))
        }
        (ServerFrame::ResumeOk { seq: s, .. }, Waiting::Resume(seq)) if s == seq => Step::Up(None),
        (ServerFrame::Error(e), Waiting::Resume(seq)) if e.seq == Some(seq) => {
            Step::ResumeRefused(e.code)
        }
        (ServerFrame::Error(e), Waiting::Login(seq)) if e.seq == Some(seq) => {
            Step::LoginRefused(e.code)
        }
        (ServerFrame::Error(e), _) => Step::Error(e.code),
        (ServerFrame::Kicked { reason }, _) => Step::Kicked(reason.as_str()),
        _ => Step::Ignore,
    }
}

/// The SDK's reconnect wait before attempt `n` (0 after a connection that was up): full
/// jitter in [0.5 s, min(20 s, 0.5 s × 2^(n+1))], from a xorshift state.
pub fn backoff(n: u32, rng: &mut u64) -> Duration {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let hi_ms = (500u64 << (n + 1).min(6)).min(20_000);
    Duration::from_millis(500 + *rng % (hi_ms - 500 + 1))
}

/// The SDK's wait after a refusal (`n`: refusals in a row, from 0): 2–4 s, then doubling up
/// to 20 s, in the upper half of each range.
pub fn refusal_backoff(n: u32, rng: &mut u64) -> Duration {
    let hi_ms = (4_000u64 << n.min(3)).min(20_000);
    let lo_ms = hi_ms / 2;
    let step = backoff(0, rng).as_millis() as u64 - 500; // 0..=500
    Duration::from_millis(lo_ms + step * (hi_ms - lo_ms) / 500)
}

/// How a connection ended.
enum End {
    Closed,
    /// Put off by the server: the refusal's backoff before the next try.
    PutOff,
    Kicked,
}

/// One session's state between frames.
struct Session {
    i: u32,
    seq: u32,
    rng: u64,
    ticket: Option<Box<str>>,
    /// Held until the first login is answered: the process's logins in flight are capped.
    permit: Option<OwnedSemaphorePermit>,
}

pub async fn run(args: WorkerArgs) -> bool {
    let nodes: Vec<SocketAddr> = args
        .urls
        .iter()
        .map(|u| {
            u.trim_start_matches("ws://")
                .trim_end_matches('/')
                .parse()
                .expect("a ws://IP:PORT URL")
        })
        .collect();
    let shared = Arc::new(Shared {
        nodes,
        binds: args.bind.clone(),
        prefix: args.prefix.clone(),
        first: args.first,
        base: Instant::now(),
        mark: AtomicU64::new(0),
        back_at: (0..args.count).map(|_| AtomicU64::new(0)).collect(),
        connected: AtomicUsize::new(0),
        relogins: AtomicUsize::new(0),
        kicks: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        put_off: AtomicUsize::new(0),
        ready_ok: AtomicUsize::new(0),
        ready_failed: AtomicUsize::new(0),
    });
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    for i in 0..args.count {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let session = Session {
            i: i as u32,
            seq: 0,
            rng: ((args.first + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            ticket: None,
            permit: Some(permit),
        };
        let task = run_session(shared.clone(), session);
        // One process says it for all.
        if i == 0 && args.first == 0 {
            eprintln!(
                "  lean generator: {} B per session task (its future), {} sessions in the first process",
                std::mem::size_of_val(&task),
                args.count
            );
        }
        tokio::spawn(task);
    }
    while shared.ready_ok.load(Ordering::Acquire) + shared.ready_failed.load(Ordering::Acquire)
        < args.count
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The logins' transient memory (UserSig deflate state, frames) goes back to the system,
    // so this process's RSS is what the held sessions keep.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
    println!(
        "ready {} {} {:.3}",
        shared.ready_ok.load(Ordering::Acquire),
        shared.ready_failed.load(Ordering::Acquire),
        t0.elapsed().as_secs_f64()
    );
    commands(&shared).await
}

/// The stdin commands of `worker.rs`, answered from the shared counters.
async fn commands(sh: &Shared) -> bool {
    let nodes = sh.nodes.len();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match line.trim() {
            "mark" => {
                sh.mark
                    .store(sh.base.elapsed().as_nanos() as u64 + 1, Ordering::Release);
                for b in &sh.back_at {
                    b.store(0, Ordering::Release);
                }
                "marked".to_owned()
            }
            "back" => {
                let mut per_node = vec![0usize; nodes];
                for (i, b) in sh.back_at.iter().enumerate() {
                    if b.load(Ordering::Acquire) != 0 {
                        per_node[(sh.first + i) % nodes] += 1;
                    }
                }
                let list: Vec<String> = per_node.iter().map(usize::to_string).collect();
                format!("back {}", list.join(","))
            }
            "status" => {
                let times = super::worker::back_times(sh.mark.load(Ordering::Acquire), &sh.back_at);
                format!(
                    "status connected={} relogins={} kicks={} not_ready=0 errors={} put_off={} rss={} times={}",
                    sh.connected.load(Ordering::Acquire),
                    sh.relogins.load(Ordering::Acquire),
                    sh.kicks.load(Ordering::Acquire),
                    sh.errors.load(Ordering::Acquire),
                    sh.put_off.load(Ordering::Acquire),
                    rss_of(std::process::id()).unwrap_or(0),
                    times
                )
            }
            "quit" => {
                println!("bye");
                return true;
            }
            other => format!("error unknown command {other:?}"),
        };
        println!("{answer}");
    }
    true
}

/// One session for the life of the process: connections one after another, with the SDK's
/// backoff between them; ends when kicked or when its first login never succeeds.
async fn run_session(sh: Arc<Shared>, mut s: Session) {
    let mut attempt = 0u32;
    let mut refusals = 0u32;
    let mut login_tries = 0u32;
    loop {
        let mut up = false;
        let end = connection(&sh, &mut s, &mut up).await;
        if up {
            sh.connected.fetch_sub(1, Ordering::AcqRel);
            attempt = 0;
        } else {
            attempt = attempt.saturating_add(1);
        }
        let mut wait = None;
        match end {
            Ok(End::Kicked) => {
                sh.kicks.fetch_add(1, Ordering::AcqRel);
                return;
            }
            Ok(End::PutOff) => {
                wait = Some(refusal_backoff(refusals, &mut s.rng));
                refusals += 1;
            }
            Ok(End::Closed) if up => refusals = 0,
            Ok(End::Closed) => {}
            Err(e) if s.permit.is_some() => {
                eprintln!(
                    "  login {}{}: {e}; retrying",
                    sh.prefix,
                    sh.first + s.i as usize
                )
            }
            Err(_) => {}
        }
        if s.permit.is_some() {
            // The first login is not done yet.
            login_tries += 1;
            if login_tries >= LOGIN_TRIES {
                eprintln!(
                    "  login {}{}: giving up",
                    sh.prefix,
                    sh.first + s.i as usize
                );
                sh.ready_failed.fetch_add(1, Ordering::AcqRel);
                return;
            }
        }
        let wait = wait.unwrap_or_else(|| backoff(attempt, &mut s.rng));
        tokio::time::sleep(wait).await;
    }
}

fn io_error(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, what.into())
}

/// The text of a `login` (a fresh UserSig) or of a `resume` with the ticket.
fn request(sh: &Shared, s: &mut Session) -> (Vec<u8>, Waiting) {
    s.seq = s.seq.wrapping_add(1);
    let (frame, waiting) = match &s.ticket {
        Some(ticket) => (
            ClientFrame::Resume {
                seq: s.seq,
                ticket: ticket.to_string(),
            },
            Waiting::Resume(s.seq),
        ),
        None => {
            let g = sh.first + s.i as usize;
            let user = format!("{}{g}", sh.prefix);
            (
                ClientFrame::Login(Login {
                    seq: s.seq,
                    sdkappid: APP,
                    usersig: sig(&user),
                    user,
                    platform: Platform::Web,
                    instance: format!("h{g}"),
                }),
                Waiting::Login(s.seq),
            )
        }
    };
    let text = serde_json::to_vec(&frame).expect("a frame serializes");
    let mut out = Vec::with_capacity(text.len() + 8);
    wire::encode(&mut out, wire::TEXT, &text, mask(&mut s.rng));
    (out, waiting)
}

fn mask(rng: &mut u64) -> [u8; 4] {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    (*rng as u32).to_le_bytes()
}

/// One connection: connect (from this process's source addresses), upgrade, log in or
/// resume, then answer pings until it closes. `up`: set once logged in or resumed.
async fn connection(sh: &Shared, s: &mut Session, up: &mut bool) -> std::io::Result<End> {
    let g = sh.first + s.i as usize;
    let addr = sh.nodes[g % sh.nodes.len()];
    let socket = TcpSocket::new_v4()?;
    if !sh.binds.is_empty() {
        socket.bind(SocketAddr::new(sh.binds[s.i as usize % sh.binds.len()], 0))?;
    }
    let mut stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(wire::upgrade_request(addr).as_bytes())
        .await?;
    let mut partial = upgrade(&mut stream).await?;
    let (hello, mut waiting) = request(sh, s);
    stream.write_all(&hello).await?;
    drop(hello);
    let mut out = Vec::new();
    // Normally nothing came after the upgrade answer; if something did, it is frames.
    let (used, mut end) = frames(sh, s, &partial, &mut waiting, up, &mut out)?;
    partial.drain(..used);
    loop {
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out = Vec::new();
        }
        if let Some(end) = end {
            return Ok(end);
        }
        stream.readable().await?;
        // The read buffer lives only until the next await: it is not part of the task.
        let mut buf = [0u8; 2048];
        let n = match stream.try_read(&mut buf) {
            Ok(0) => return Ok(End::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if partial.is_empty() {
            let (used, e) = frames(sh, s, &buf[..n], &mut waiting, up, &mut out)?;
            end = e;
            if used < n {
                partial = buf[used..n].to_vec();
            }
        } else {
            partial.extend_from_slice(&buf[..n]);
            let (used, e) = frames(sh, s, &partial, &mut waiting, up, &mut out)?;
            end = e;
            partial.drain(..used);
            if partial.is_empty() {
                partial = Vec::new();
            }
        }
    }
}

/// Acts on the complete frames at the start of `data`: (bytes they took, how the
/// connection ends if one ends it).
fn frames(
    sh: &Shared,
    s: &mut Session,
    data: &[u8],
    waiting: &mut Waiting,
    up: &mut bool,
    out: &mut Vec<u8>,
) -> std::io::Result<(usize, Option<End>)> {
    let mut at = 0;
    while let Some((frame, used)) = wire::decode(&data[at..], MAX_FRAME_BYTES).map_err(io_error)? {
        at += used;
        if let Some(end) = on_frame(sh, s, &frame, waiting, up, out) {
            return Ok((at, Some(end)));
        }
    }
    Ok((at, None))
}

/// Reads the upgrade answer; what came after it (normally nothing).
async fn upgrade(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        stream.readable().await?;
        let mut buf = [0u8; 512];
        match stream.try_read(&mut buf) {
            Ok(0) => return Err(io_error("closed during the upgrade")),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        match wire::upgrade_answer(&head) {
            None if head.len() < 4096 => continue,
            None => return Err(io_error("upgrade answer too long")),
            Some(Err(status)) => return Err(io_error(status)),
            Some(Ok(used)) => return Ok(head.split_off(used)),
        }
    }
}

/// Acts on one frame: what to send goes to `out`; `Some` ends the connection.
fn on_frame(
    sh: &Shared,
    s: &mut Session,
    frame: &Frame<'_>,
    waiting: &mut Waiting,
    up: &mut bool,
    out: &mut Vec<u8>,
) -> Option<End> {
    match frame.opcode {
        wire::TEXT => {}
        wire::PING => {
            wire::encode(out, wire::PONG, frame.payload, mask(&mut s.rng));
            return None;
        }
        wire::CLOSE => return Some(End::Closed),
        _ => return None,
    }
    match on_text(frame.payload, *waiting) {
        Step::Ignore => {}
        Step::Pong => {
            wire::encode(out, wire::TEXT, br#""pong""#, mask(&mut s.rng));
        }
        Step::Up(ticket) => {
            *waiting = Waiting::Nothing;
            if let Some(t) = ticket {
                s.ticket = Some(t.into_boxed_str());
            }
            if s.permit.take().is_some() {
                sh.ready_ok.fetch_add(1, Ordering::AcqRel);
            }
            if !*up {
                *up = true;
                sh.connected.fetch_add(1, Ordering::AcqRel);
                let at = sh.base.elapsed().as_nanos() as u64 + 1;
                if at > sh.mark.load(Ordering::Acquire) {
                    sh.back_at[s.i as usize].store(at, Ordering::Release);
                }
            }
        }
        Step::ResumeRefused(code) => {
            let seen = sh.relogins.fetch_add(1, Ordering::AcqRel);
            if seen < 20 {
                eprintln!(
                    "  session {}{}: resume refused ({code}): logging in again",
                    sh.prefix,
                    sh.first + s.i as usize
                );
            }
            s.ticket = None;
            let (login, w) = request(sh, s);
            out.extend_from_slice(&login);
            *waiting = w;
        }
        Step::PutOff(_) => {
            sh.put_off.fetch_add(1, Ordering::AcqRel);
            return Some(End::PutOff);
        }
        Step::LoginRefused(code) | Step::Error(code) => {
            let seen = sh.errors.fetch_add(1, Ordering::AcqRel);
            if seen < 20 {
                eprintln!(
                    "  session {}{}: error {code}",
                    sh.prefix,
                    sh.first + s.i as usize
                );
            }
            if matches!(*waiting, Waiting::Login(_)) {
                return Some(End::Closed);
            }
        }
        Step::Kicked(reason) => {
            if sh.kicks.load(Ordering::Acquire) < 20 {
                eprintln!(
                    "  session {}{}: kicked ({reason})",
                    sh.prefix,
                    sh.first + s.i as usize
                );
            }
            return Some(End::Kicked);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_answers_pings_and_knows_its_answers_by_seq() {
        assert_eq!(on_text(br#""ping""#, Waiting::Nothing), Step::Pong);
        assert_eq!(on_text(br#""pong""#, Waiting::Nothing), Step::Ignore);
        let ok = br#"{"login_ok":{"seq":3,"ticket":"T","heartbeat_ms":25000,"expire_at":9,"expires_in":9}}"#;
        assert_eq!(on_text(ok, Waiting::Login(3)), Step::Up(Some("T".into())));
        // An answer to an older request is not this one's.
        assert_eq!(on_text(ok, Waiting::Login(4)), Step::Ignore);
        let resumed =
            br#"{"resume_ok":{"seq":5,"heartbeat_ms":25000,"expire_at":9,"expires_in":9}}"#;
        assert_eq!(on_text(resumed, Waiting::Resume(5)), Step::Up(None));
        let refused = br#"{"error":{"seq":5,"code":70001,"message":"ticket"}}"#;
        assert_eq!(
            on_text(refused, Waiting::Resume(5)),
            Step::ResumeRefused(70001)
        );
        assert_eq!(
            on_text(refused, Waiting::Login(5)),
            Step::LoginRefused(70001)
        );
        // Put off, not refused: the ticket is kept and tried again later.
        let busy = br#"{"error":{"seq":5,"code":70169,"message":"busy"}}"#;
        assert_eq!(on_text(busy, Waiting::Resume(5)), Step::PutOff(70169));
        assert_eq!(on_text(busy, Waiting::Login(5)), Step::PutOff(70169));
        let limit = br#"{"error":{"code":70050,"message":"too fast"}}"#;
        assert_eq!(on_text(limit, Waiting::Resume(5)), Step::Error(70050));
        let kicked = br#"{"kicked":{"reason":"REST_API_Kick"}}"#;
        assert_eq!(
            on_text(kicked, Waiting::Nothing),
            Step::Kicked("REST_API_Kick")
        );
        assert_eq!(on_text(br#"{"future":1}"#, Waiting::Nothing), Step::Ignore);
    }

    #[test]
    fn backoff_stays_in_the_sdk_bounds() {
        let mut rng = 0x1234_5678_9abc_def1;
        for n in 0..12 {
            let hi = (500u64 << (n + 1).min(6)).min(20_000);
            for _ in 0..200 {
                let d = backoff(n, &mut rng).as_millis() as u64;
                assert!((500..=hi).contains(&d), "attempt {n}: {d} ms");
            }
        }
        for (n, lo, hi) in [
            (0, 2_000, 4_000),
            (1, 4_000, 8_000),
            (3, 10_000, 20_000),
            (9, 10_000, 20_000),
        ] {
            for _ in 0..200 {
                let d = refusal_backoff(n, &mut rng).as_millis() as u64;
                assert!((lo..=hi).contains(&d), "refusal {n}: {d} ms");
            }
        }
    }
}
