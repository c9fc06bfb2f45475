//! timd's admin APIs for the operator's console (`/console`, `docs/console.md`), callable by
//! any admin client, authenticated and rate-limited as every REST call:
//!
//! - `/v4/timd/online_summary`: the app's sessions per platform (and per node);
//! - `/v4/timd/user_sessions`: one user's instances and recent kicks;
//! - `/v4/timd/get_events`: the feed of logins, resumes, logouts, disconnects and kicks,
//!   read with a cursor, optionally waiting for the next one (long poll);
//! - `/v4/timd/get_event_counts`: logins and kicks per minute over the last hour.
//!
//! In cluster mode every node answers with the cluster's numbers (`cluster/console.rs`).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tim_proto::{KickReason, Platform};

use super::accounts::accounts_exist;
use super::body::{self, Object};
use super::settings::no_fields;
use super::{detached, fields, Caller, Fields, RestError};
use crate::backend::PlatformCounts;
use crate::clock::unix_ms;
use crate::events::{Event, MinuteCount};
use crate::state::AppState;

/// Longest `Wait` of a `get_events` call, seconds (below common proxies' 60 s timeouts).
pub const MAX_WAIT_SECS: u64 = 25;
/// Most events a `get_events` call returns (and its default `Max`).
pub const MAX_EVENTS: usize = crate::events::RING;
const DEFAULT_EVENTS: usize = 100;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PlatformOnline {
    platform: Platform,
    /// Connected now.
    online: usize,
    /// Socket gone, slot held for a resume.
    away: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeCount {
    node: String,
    online: usize,
    away: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Summary {
    online: usize,
    away: usize,
    platforms: Vec<PlatformOnline>,
    /// Cluster mode: each node's share (empty in embedded mode).
    nodes: Vec<NodeCount>,
    /// Cluster mode: the node that answered (empty in embedded mode).
    node: String,
    /// Unix ms.
    server_time: u64,
}

fn totals(counts: &PlatformCounts) -> (usize, usize) {
    counts.iter().fold((0, 0), |(o, a), (x, y)| (o + x, a + y))
}

/// `online_summary`, body `{}`.
pub async fn online_summary(
    state: &AppState,
    caller: &Caller,
    body: &Object,
) -> Result<Fields, RestError> {
    no_fields(body)?;
    let (backend, app) = (state.backend().clone(), caller.app.sdkappid);
    let summary = detached(async move { Ok(backend.online_summary(app).await?) }).await?;
    let (online, away) = totals(&summary.platforms);
    Ok(fields(Summary {
        online,
        away,
        platforms: Platform::ALL
            .iter()
            .zip(summary.platforms)
            .map(|(&platform, (online, away))| PlatformOnline {
                platform,
                online,
                away,
            })
            .collect(),
        nodes: summary
            .nodes
            .into_iter()
            .filter(|n| !n.node.is_empty())
            .map(|n| {
                let (online, away) = totals(&n.counts);
                NodeCount {
                    node: n.node,
                    online,
                    away,
                }
            })
            .collect(),
        node: state.backend().node().unwrap_or_default().to_owned(),
        server_time: unix_ms(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Instance {
    instance: String,
    platform: Platform,
    /// Login time, unix ms.
    since: u64,
    /// `Online` (connected) or `Away` (socket gone, slot held for a resume).
    status: &'static str,
    /// Cluster mode: the node holding it (empty in embedded mode).
    node: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Kick {
    instance: String,
    platform: Platform,
    /// The kicked session's login time, unix ms.
    since: u64,
    reason: KickReason,
    /// When it was kicked, unix ms.
    time: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UserSessions {
    #[serde(rename = "UserID")]
    user: String,
    /// Earliest login first.
    instances: Vec<Instance>,
    /// Oldest first.
    recent_kicks: Vec<Kick>,
    server_time: u64,
}

/// `user_sessions`, body `{"UserID": "alice"}`: 70107 if the account does not exist.
pub async fn user_sessions(
    state: &AppState,
    caller: &Caller,
    body: &Object,
) -> Result<Fields, RestError> {
    let user = body::user_id(body, "")?;
    if let Some(name) = body
        .keys()
        .find(|k| !["UserID", "Identifier"].contains(&k.as_str()))
    {
        return Err(RestError::invalid(format!(
            "unknown field {}: this API takes UserID",
            super::auth::echo(name)
        )));
    }
    let app = caller.app.sdkappid;
    let (backend, u) = (state.backend().clone(), user.clone());
    let (instances, kicks) = detached(async move {
        Ok((
            backend.instances(app, &u).await?,
            backend.recent_kicks(app, &u).await?,
        ))
    })
    .await?;
    if instances.is_empty() && !accounts_exist(state, app, vec![user.clone()]).await?[0] {
        return Err(RestError::AccountNotFound(user));
    }
    Ok(fields(UserSessions {
        user,
        instances: instances
            .into_iter()
            .map(|i| Instance {
                instance: i.instance,
                platform: i.platform,
                since: i.since_ms,
                status: if i.attached { "Online" } else { "Away" },
                node: i.node,
            })
            .collect(),
        recent_kicks: kicks
            .into_iter()
            .map(|k| Kick {
                instance: k.instance,
                platform: k.platform,
                since: k.since_ms,
                reason: k.reason,
                time: k.at_ms,
            })
            .collect(),
        server_time: unix_ms(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventsPage {
    /// The stream the cursor belongs to (this process): send it back with `After`.
    stream: String,
    /// The cursor of the next call (`After`).
    next: u64,
    /// Oldest first.
    events: Vec<Event>,
}

const EVENT_FIELDS: [&str; 4] = ["Stream", "After", "Wait", "Max"];

/// `get_events`, body `{"Stream"?, "After"?, "Wait"?, "Max"?}`: the app's events after
/// cursor `After` of `Stream` (the newest `Max`, 100 by default, at most 500). A cursor of
/// another stream (another node, or this one before a restart) reads from the oldest kept
/// event. With `Wait` (1..=25 s) and nothing new, the answer waits for the next event.
pub async fn get_events(
    state: &AppState,
    caller: &Caller,
    body: &Object,
) -> Result<Fields, RestError> {
    if let Some(name) = body.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
        return Err(RestError::invalid(format!(
            "unknown field {}: expected Stream, After, Wait or Max",
            super::auth::echo(name)
        )));
    }
    let stream = match body.get("Stream") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(RestError::invalid("Stream must be a string")),
    };
    let number = |name: &str, max: u64, default: u64| -> Result<u64, RestError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
                RestError::invalid(format!("{name} must be an integer from 0 to {max}"))
            }),
        }
    };
    let after = number("After", u64::MAX, 0)?;
    let wait = Duration::from_secs(number("Wait", MAX_WAIT_SECS, 0)?);
    let max = match number("Max", MAX_EVENTS as u64, DEFAULT_EVENTS as u64)? {
        0 => {
            return Err(RestError::invalid(format!(
                "Max must be from 1 to {MAX_EVENTS}"
            )))
        }
        n => n as usize,
    };
    let app = caller.app.sdkappid;
    let events = state.events();
    // Subscribed before the first read: an event recorded in between wakes the wait.
    let mut changed = events.subscribe();
    let give_up = tokio::time::Instant::now() + wait;
    let shutdown = state.shutdown_token();
    let page = loop {
        let page = events.read(app, stream, after, max);
        let fresh_cursor = stream != Some(page.stream.as_str());
        if !page.events.is_empty() || fresh_cursor || wait.is_zero() {
            break page;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break page,
            _ = tokio::time::sleep_until(give_up) => break page,
            r = changed.changed() => if r.is_err() { break page },
        }
    };
    Ok(fields(EventsPage {
        stream: page.stream,
        next: page.next,
        events: page.events,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Counts {
    /// The last hour's minutes and the current one, oldest first.
    minutes: Vec<MinuteCount>,
    server_time: u64,
}

/// `get_event_counts`, body `{}`: logins and kicks per minute, the last hour.
pub async fn get_event_counts(
    state: &AppState,
    caller: &Caller,
    body: &Object,
) -> Result<Fields, RestError> {
    no_fields(body)?;
    let (backend, events, app) = (
        state.backend().clone(),
        state.events().clone(),
        caller.app.sdkappid,
    );
    let minutes = detached(async move { Ok(backend.event_counts(app, &events).await?) }).await?;
    Ok(fields(Counts {
        minutes,
        server_time: unix_ms(),
    }))
}
