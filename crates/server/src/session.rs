//! What both backends (`backend/`) share about a session: its ids, what a socket task is
//! told, the snapshot of an instance, why a resume is refused, and the node-local link from
//! a session to its socket (attached, or away and held for a resume).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use tim_proto::{KickReason, Platform};

use crate::ticket::TicketClaims;

/// Capacity of a socket's command queue. A backend sends at most one command per
/// session and a socket has at most one live session, and the socket task drains commands
/// before reading further frames, so this never fills in practice.
pub const OUTBOX_CAPACITY: usize = 4;

/// Identifies one attachment of a session to a socket. Never reused within a process, so a
/// stale command for an earlier session on the same socket is recognizable and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    /// A fresh id, unique in this process (across apps and backends).
    pub fn next() -> SessionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a backend asks a socket task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketCommand {
    /// The session was kicked: send `kicked{reason}`, then close with `close::KICKED`.
    /// The backend's entry is already gone.
    Kick {
        session: SessionId,
        reason: KickReason,
        /// The decision that kicked it stored its State.StateChange event already (a
        /// cluster REST kick, `kick_user.lua`): the socket stores none.
        reported: bool,
    },
    /// The same instance is now on another socket (a reconnect raced the old socket's
    /// close): close this one without a `kicked` frame.
    Superseded { session: SessionId },
    /// This node lost its hold on the session (cluster mode: it could not renew its node
    /// lease in time, so others may treat the slot as free): close the socket as a server
    /// restart does, so the client resumes (on any node).
    Lost { session: SessionId },
}

/// The sending side of a socket task's command queue: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Outbox(Arc<Mutex<Queue>>);

/// The socket task's end of its command queue. Dropped with the task: later commands are
/// discarded, as they are for a socket that is gone.
pub struct Commands(Arc<Mutex<Queue>>);

/// A socket's commands: a kick or two in a session's life, so a lock around a queue that
/// allocates only when used (a tokio channel allocated ~1 KiB up front for every socket,
/// idle ones included, which is most of them).
#[derive(Default)]
struct Queue {
    commands: VecDeque<SocketCommand>,
    /// The socket task waiting for a command.
    waker: Option<Waker>,
    closed: bool,
}

/// A socket task's command queue: the outbox the backends send to and the task's end.
pub fn commands() -> (Outbox, Commands) {
    let queue = Arc::new(Mutex::new(Queue::default()));
    (Outbox(Arc::clone(&queue)), Commands(queue))
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`Commands::try_recv`] found none.
#[derive(Debug, PartialEq, Eq)]
pub struct Empty;

impl Commands {
    /// The next command, waiting for one (cancel-safe: a command is taken only when
    /// returned).
    pub async fn recv(&mut self) -> SocketCommand {
        std::future::poll_fn(|cx| {
            let mut queue = lock(&self.0);
            if let Some(command) = queue.commands.pop_front() {
                return Poll::Ready(command);
            }
            match &mut queue.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                waker => *waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next command if one waits.
    pub fn try_recv(&mut self) -> Result<SocketCommand, Empty> {
        lock(&self.0).commands.pop_front().ok_or(Empty)
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        let (commands, waker) = {
            let mut queue = lock(&self.0);
            queue.closed = true;
            (std::mem::take(&mut queue.commands), queue.waker.take())
        };
        // Dropped outside the lock: a waker may hold the last reference to a task, whose
        // drop could come back here.
        drop((commands, waker));
    }
}

/// A login to record (its UserSig already verified).
#[derive(Debug)]
pub struct NewSession {
    pub app: u32,
    pub user: String,
    pub instance: String,
    pub platform: Platform,
    /// Unix seconds at which the UserSig expires.
    pub expire_at: u64,
    /// The UserSig's issue time, unix seconds.
    pub sig_time: u64,
    pub outbox: Outbox,
    /// The client's address (the State.StateChange callback's `ClientIP`).
    pub client: Option<std::net::IpAddr>,
}

impl NewSession {
    /// This login's instance once admitted as `session`, in login order `since_ms`, on
    /// `node` (empty in embedded mode).
    pub fn info(&self, session: SessionId, since_ms: u64, node: String) -> InstanceInfo {
        InstanceInfo {
            session,
            app: self.app,
            user: self.user.clone(),
            instance: self.instance.clone(),
            platform: self.platform,
            since_ms,
            expire_at: self.expire_at,
            sig_time: self.sig_time,
            attached: true,
            node,
        }
    }
}

/// A snapshot of one online instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub session: SessionId,
    pub app: u32,
    pub user: String,
    pub instance: String,
    pub platform: Platform,
    /// When it logged in, unix milliseconds; unique per user, so it orders the instances.
    pub since_ms: u64,
    pub expire_at: u64,
    pub sig_time: u64,
    /// False while its socket is gone and it waits for a resume.
    pub attached: bool,
    /// Cluster mode: the node holding it (empty in embedded mode).
    pub node: String,
}

impl InstanceInfo {
    /// The session a ticket names, resumed as `session` on `node` (empty in embedded mode).
    pub fn resumed(claims: &TicketClaims, session: SessionId, node: String) -> InstanceInfo {
        InstanceInfo {
            session,
            app: claims.app,
            user: claims.user.clone(),
            instance: claims.instance.clone(),
            platform: claims.platform,
            since_ms: claims.since_ms,
            expire_at: claims.expire_at,
            sig_time: claims.sig_time,
            attached: true,
            node,
        }
    }

    /// What a ticket for this session says, good until `valid_until` (unix seconds).
    pub fn ticket_claims(&self, valid_until: u64) -> TicketClaims {
        TicketClaims {
            app: self.app,
            user: self.user.clone(),
            instance: self.instance.clone(),
            platform: self.platform,
            since_ms: self.since_ms,
            expire_at: self.expire_at,
            sig_time: self.sig_time,
            valid_until,
        }
    }
}

/// Why a resume was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    /// The session was kicked while away (or would have been, had the server known).
    Kicked(KickReason),
    /// The instance has logged in again since: this ticket is stale.
    Replaced,
    /// The session is over (logged out), or the ticket past its lifetime: the holder must
    /// log in again with its UserSig.
    Ended,
}

/// A recent kick of one instance (the demo page's and console's kick feed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KickRecord {
    pub instance: String,
    pub platform: Platform,
    /// The kicked session's login time, unix ms.
    pub since_ms: u64,
    pub reason: KickReason,
    /// When it was kicked, unix ms.
    pub at_ms: u64,
}

/// A session held by this process: its snapshot and how to reach its socket. The embedded
/// registry's slots and a cluster node's held sessions are both this.
pub struct Local {
    pub info: InstanceInfo,
    link: Link,
}

enum Link {
    Attached(Outbox),
    /// The socket is gone; the slot is kept until then for a resume.
    Away(Instant),
}

impl Local {
    pub fn attached(info: InstanceInfo, outbox: Outbox) -> Local {
        Local {
            info,
            link: Link::Attached(outbox),
        }
    }

    /// The socket closed: held for a resume until `until`.
    pub fn detach(&mut self, until: Instant) {
        self.info.attached = false;
        self.link = Link::Away(until);
    }

    /// A resume: the session continues on `outbox` as `session`.
    pub fn reattach(&mut self, session: SessionId, outbox: Outbox) {
        self.info.session = session;
        self.info.attached = true;
        self.link = Link::Attached(outbox);
    }

    pub fn is_attached(&self) -> bool {
        matches!(self.link, Link::Attached(_))
    }

    /// Until when an away session is held (`None` while attached).
    pub fn away_until(&self) -> Option<Instant> {
        match self.link {
            Link::Away(until) => Some(until),
            Link::Attached(_) => None,
        }
    }

    /// Tells the socket task, if attached; never blocks. A closed channel means the socket
    /// task is already ending: nothing to do.
    pub fn notify(&self, command: SocketCommand) {
        if let Link::Attached(outbox) = &self.link {
            send(outbox, command);
        }
    }
}

/// Sends `command` to a socket task without waiting; nothing if the task is gone.
pub fn send(outbox: &Outbox, command: SocketCommand) {
    let waker = {
        let mut queue = lock(&outbox.0);
        if queue.closed {
            return;
        }
        if queue.commands.len() >= OUTBOX_CAPACITY {
            drop(queue);
            tracing::warn!(?command, "socket outbox full; command dropped");
            return;
        }
        queue.commands.push_back(command);
        queue.waker.take()
    };
    // Woken outside the lock: the task may run at once on another thread and take it.
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kick(n: u64) -> SocketCommand {
        SocketCommand::Superseded {
            session: SessionId(n),
        }
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_a_command_sent_from_another_thread() {
        let (outbox, mut commands) = commands();
        // Its own task: polled again only if woken (a timeout would poll it regardless).
        let waiting = tokio::spawn(async move { commands.recv().await });
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            send(&outbox, kick(1));
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert_eq!(got.expect("woken").unwrap(), kick(1));
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn commands_arrive_in_order_and_a_cancelled_recv_loses_none() {
        let (outbox, mut commands) = commands();
        // A recv dropped while pending (a select! that took another branch) takes nothing.
        let pending = tokio::time::timeout(std::time::Duration::from_millis(10), commands.recv());
        assert!(pending.await.is_err());
        send(&outbox, kick(1));
        send(&outbox.clone(), kick(2));
        assert_eq!(commands.recv().await, kick(1));
        assert_eq!(commands.try_recv(), Ok(kick(2)));
        assert_eq!(commands.try_recv(), Err(Empty));
    }

    #[test]
    fn a_full_queue_drops_what_comes_beyond_its_capacity() {
        let (outbox, mut commands) = commands();
        for n in 0..OUTBOX_CAPACITY as u64 + 2 {
            send(&outbox, kick(n));
        }
        for n in 0..OUTBOX_CAPACITY as u64 {
            assert_eq!(commands.try_recv(), Ok(kick(n)));
        }
        assert_eq!(commands.try_recv(), Err(Empty));
    }

    #[test]
    fn commands_to_a_gone_socket_are_discarded() {
        let (outbox, mut commands) = commands();
        send(&outbox, kick(1));
        let queue = Arc::clone(&commands.0);
        assert_eq!(commands.try_recv(), Ok(kick(1)));
        send(&outbox, kick(2));
        drop(commands);
        assert!(lock(&queue).commands.is_empty(), "a pending one is dropped");
        send(&outbox, kick(3));
        assert!(
            lock(&queue).commands.is_empty(),
            "nothing is kept for nobody"
        );
    }
}
