//! The decision scripts (`lua/`), each one atomic in Redis, and how to read their replies.
//! Every script is the shared prelude (key layout, encodings, the login policy, lazy lease
//! expiry) followed by its own body; `redis::Script` sends it by SHA (EVALSHA) and loads
//! it on a NOSCRIPT answer.

use redis::{Script, Value};
use tim_proto::KickReason;

use super::held::Notice;
use crate::session::SessionId;

const PRELUDE: &str = include_str!("lua/prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

pub struct Scripts {
    pub login: Script,
    pub resume: Script,
    pub session: Script,
    pub kick_user: Script,
    pub renew_leases: Script,
    pub enforce: Script,
    pub reap: Script,
    /// Node-level (no user prelude): a node's round on `tim:nodes`.
    pub node_round: Script,
    /// App-level (no user prelude): an app's login settings.
    pub settings_init: Script,
    pub settings_set: Script,
    pub settings_restore: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            login: script(include_str!("lua/login.lua")),
            resume: script(include_str!("lua/resume.lua")),
            session: script(include_str!("lua/session.lua")),
            kick_user: script(include_str!("lua/kick_user.lua")),
            renew_leases: script(include_str!("lua/renew_leases.lua")),
            enforce: script(include_str!("lua/enforce.lua")),
            reap: script(include_str!("lua/reap.lua")),
            node_round: Script::new(include_str!("lua/node_round.lua")),
            settings_init: Script::new(include_str!("lua/settings_init.lua")),
            settings_set: Script::new(include_str!("lua/settings_set.lua")),
            settings_restore: Script::new(include_str!("lua/settings_restore.lua")),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}

/// A reply that is not what the script returns: a bug, or someone else's keys.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from a cluster script: {0}")]
pub struct BadReply(pub String);

pub fn text(v: &Value) -> Result<String, BadReply> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad(v)),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        _ => Err(bad(v)),
    }
}

pub fn int(v: &Value) -> Result<u64, BadReply> {
    match v {
        Value::Int(n) => u64::try_from(*n).map_err(|_| bad(v)),
        _ => text(v)?.parse().map_err(|_| bad(v)),
    }
}

pub fn array(v: &Value) -> Result<&[Value], BadReply> {
    match v {
        Value::Array(items) => Ok(items),
        // Lua's empty table comes back as an empty array or nil, depending on the protocol.
        Value::Nil => Ok(&[]),
        _ => Err(bad(v)),
    }
}

fn bad(v: &Value) -> BadReply {
    let mut s = format!("{v:?}");
    s.truncate(200);
    BadReply(s)
}

pub fn kick_reason(s: &str) -> Result<KickReason, BadReply> {
    match s {
        "multipleAccount" => Ok(KickReason::MultipleAccount),
        "multipleDevice" => Ok(KickReason::MultipleDevice),
        "userSigExpired" => Ok(KickReason::UserSigExpired),
        "REST_API_Kick" => Ok(KickReason::RestApi),
        other => Err(BadReply(format!("unknown kick reason {other:?}"))),
    }
}

/// Reads a notice: kind (`K` kicked, `R` kicked with its callback event stored by the
/// script, `S` superseded), session, reason.
pub fn notice(kind: &str, session: &str, reason: &str) -> Result<(SessionId, Notice), BadReply> {
    let session = SessionId(
        session
            .parse()
            .map_err(|_| BadReply(format!("bad session {session:?}")))?,
    );
    let notice = match kind {
        "K" => Notice::Kick(kick_reason(reason)?),
        "R" => Notice::KickReported(kick_reason(reason)?),
        "S" => Notice::Superseded,
        other => return Err(BadReply(format!("unknown notice kind {other:?}"))),
    };
    Ok((session, notice))
}

/// The `mine` list a decision script returns: this node's victims, as flat triples.
pub fn local_notices(v: &Value) -> Result<Vec<(SessionId, Notice)>, BadReply> {
    let items = array(v)?;
    items
        .chunks(3)
        .map(|c| match c {
            [kind, session, reason] => notice(&text(kind)?, &text(session)?, &text(reason)?),
            _ => Err(bad(v)),
        })
        .collect()
}

/// A write to a key of another slot that a script handed back to its node (`later` in
/// `lua/prelude.lua`): the node makes it after the script (the two-step path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred {
    /// The write as the script's outbox holds it (JSON), removed once made; empty for a
    /// write nobody waits for (an index removal).
    pub marker: String,
    /// Command, key, arguments.
    pub command: Vec<String>,
}

impl Deferred {
    pub fn cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd(&self.command[0]);
        for arg in &self.command[1..] {
            cmd.arg(arg);
        }
        cmd
    }
}

/// A user script's reply, `{reply, writes}`: the script's own reply and the writes to other
/// slots it handed back.
pub fn split_deferred(v: &Value) -> Result<(Value, Vec<Deferred>), BadReply> {
    let [reply, writes] = array(v)? else {
        return Err(bad(v));
    };
    let mut out = Vec::new();
    for w in array(writes)? {
        let parts = array(w)?
            .iter()
            .map(text)
            .collect::<Result<Vec<String>, _>>()?;
        let [marker, command @ ..] = parts.as_slice() else {
            return Err(bad(w));
        };
        if command.len() < 2 {
            return Err(bad(w));
        }
        out.push(Deferred {
            marker: marker.clone(),
            command: command.to_vec(),
        });
    }
    Ok((reply.clone(), out))
}

/// An entry of a node's stream: `kind|session|reason`.
pub fn channel_message(payload: &str) -> Result<(SessionId, Notice), BadReply> {
    let mut parts = payload.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(kind), Some(session), Some(reason)) => notice(kind, session, reason),
        _ => Err(BadReply(format!("bad channel message {payload:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_parse() {
        assert_eq!(
            channel_message("K|42|multipleDevice").unwrap(),
            (SessionId(42), Notice::Kick(KickReason::MultipleDevice))
        );
        assert_eq!(
            channel_message("S|7|").unwrap(),
            (SessionId(7), Notice::Superseded)
        );
        assert!(channel_message("K|x|multipleDevice").is_err());
        assert!(channel_message("K|1|nope").is_err());
        assert!(channel_message("K|1").is_err());
    }
}
