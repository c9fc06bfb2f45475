//! What both backends (`backend/`) share about a session: its ids, what a socket task is
//! told, the snapshot of an instance, why a resume is refused, and the node-local link from
//! a session to its socket (attached, or away and held for a resume).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tim_proto::{KickReason, Platform};
use tokio::sync::mpsc;

use crate::ticket::TicketClaims;

/// Capacity of a socket's command channel. A backend sends at most one command per
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

/// The sending side of a socket task's command channel.
pub type Outbox = mpsc::Sender<SocketCommand>;

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

/// Sends `command` to a socket task without waiting.
pub fn send(outbox: &Outbox, command: SocketCommand) {
    if let Err(mpsc::error::TrySendError::Full(command)) = outbox.try_send(command) {
        tracing::warn!(?command, "socket outbox full; command dropped");
    }
}
