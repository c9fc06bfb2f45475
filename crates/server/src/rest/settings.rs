//! timd's own admin APIs beside Tencent's, authenticated the same way: an app's login
//! settings read and changed at run time (`/v4/timd/get_login_settings`,
//! `set_login_settings`, `get_login_settings_history`). Tencent changes them in its console
//! only ("takes effect within 5 minutes"); here a change is in force on every node when the
//! call answers (`backend`), and every change is kept with who made it.

use serde::Serialize;
use serde_json::Value;

use super::body::Object;
use super::{detached, fields, Caller, Fields, RestError};
use crate::apps::Versioned;
use crate::backend::SettingsUpdate;
use crate::policy::{LoginPolicy, LoginSettings, PLATFORM_INSTANCES_MAX, WEB_INSTANCES_MAX};
use crate::state::AppState;

/// `LoginSettings` as the APIs spell it.
#[derive(Debug, Serialize)]
struct Settings {
    #[serde(rename = "WebInstances")]
    web_instances: u8,
    #[serde(rename = "PlatformInstances")]
    platform_instances: u8,
    #[serde(rename = "MultiPlatformPolicy")]
    policy: &'static str,
}

impl From<LoginSettings> for Settings {
    fn from(s: LoginSettings) -> Self {
        Settings {
            web_instances: s.web_instances,
            platform_instances: s.platform_instances,
            policy: s.policy.as_str(),
        }
    }
}

#[derive(Serialize)]
struct Answer {
    #[serde(rename = "LoginSettings")]
    settings: Settings,
    #[serde(rename = "Version")]
    version: u64,
}

impl From<Versioned> for Answer {
    fn from(v: Versioned) -> Self {
        Answer {
            settings: v.settings.into(),
            version: v.version,
        }
    }
}

#[derive(Serialize)]
struct HistoryEntry {
    #[serde(rename = "Version")]
    version: u64,
    /// Unix seconds.
    #[serde(rename = "Time")]
    time: u64,
    #[serde(rename = "Admin")]
    admin: String,
    #[serde(rename = "LoginSettings")]
    settings: Settings,
}

#[derive(Serialize)]
struct History {
    #[serde(rename = "History")]
    history: Vec<HistoryEntry>,
}

const FIELDS: [&str; 4] = [
    "WebInstances",
    "PlatformInstances",
    "MultiPlatformPolicy",
    "ApplyNow",
];

/// `get_login_settings`, body `{}`: the app's login settings and their version.
pub async fn get(state: &AppState, caller: &Caller, body: &Object) -> Result<Fields, RestError> {
    no_fields(body)?;
    let (backend, app) = (state.backend().clone(), caller.app.clone());
    let current = detached(async move { Ok(backend.settings(&app).await?) }).await?;
    Ok(fields(Answer::from(current)))
}

/// `set_login_settings`: any of `WebInstances` (1..=10), `PlatformInstances` (1..=3),
/// `MultiPlatformPolicy` (`single`, `dual`, `triple`, `all`), and `ApplyNow` (0 or 1). A
/// bad value changes nothing (70402). Without `ApplyNow` the new settings decide the next
/// logins; with it, the instances now beyond them are kicked at once, earliest first.
pub async fn set(state: &AppState, caller: &Caller, body: &Object) -> Result<Fields, RestError> {
    let (update, apply_now) = parse_update(body)?;
    let (backend, apps, app, admin) = (
        state.backend().clone(),
        state.apps().clone(),
        caller.app.clone(),
        caller.admin.clone(),
    );
    let sink = state.callbacks().sink(app.sdkappid);
    let new = detached(async move {
        Ok(backend
            .set_settings(&apps, &app, update, &admin, apply_now, sink)
            .await?)
    })
    .await?;
    tracing::info!(
        app = caller.app.sdkappid,
        admin = %caller.admin,
        version = new.version,
        settings = ?new.settings,
        apply_now,
        "login settings changed"
    );
    Ok(fields(Answer::from(new)))
}

/// `get_login_settings_history`, body `{}`: every change, newest first.
pub async fn history(
    state: &AppState,
    caller: &Caller,
    body: &Object,
) -> Result<Fields, RestError> {
    no_fields(body)?;
    let (backend, app) = (state.backend().clone(), caller.app.sdkappid);
    let changes = detached(async move { Ok(backend.settings_history(app).await?) }).await?;
    Ok(fields(History {
        history: changes
            .into_iter()
            .map(|c| HistoryEntry {
                version: c.version,
                time: c.time,
                admin: c.admin,
                settings: c.settings.into(),
            })
            .collect(),
    }))
}

pub(super) fn no_fields(body: &Object) -> Result<(), RestError> {
    match body.keys().next() {
        None => Ok(()),
        Some(name) => Err(RestError::invalid(format!(
            "unknown field {}: this API takes an empty object",
            super::auth::echo(name)
        ))),
    }
}

/// The change a `set_login_settings` body asks for, checked in full before anything
/// changes: every field in range, no unknown field (a misspelt one would otherwise be a
/// silent no-op), and something to do.
pub fn parse_update(body: &Object) -> Result<(SettingsUpdate, bool), RestError> {
    if let Some(name) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(RestError::invalid(format!(
            "unknown field {}: expected WebInstances, PlatformInstances, MultiPlatformPolicy \
             or ApplyNow",
            super::auth::echo(name)
        )));
    }
    let number = |name: &str, max: u8| -> Result<Option<u8>, RestError> {
        match body.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(max)).contains(n))
                .map(|n| Some(n as u8))
                .ok_or_else(|| {
                    RestError::invalid(format!("{name} must be an integer from 1 to {max}"))
                }),
        }
    };
    let update = SettingsUpdate {
        web_instances: number("WebInstances", WEB_INSTANCES_MAX)?,
        platform_instances: number("PlatformInstances", PLATFORM_INSTANCES_MAX)?,
        policy: match body.get("MultiPlatformPolicy") {
            None => None,
            Some(Value::String(p)) => Some(p.parse::<LoginPolicy>().map_err(RestError::invalid)?),
            Some(_) => {
                return Err(RestError::invalid(
                    "MultiPlatformPolicy must be \"single\", \"dual\", \"triple\" or \"all\"",
                ))
            }
        },
    };
    let apply_now = super::body::optional_flag(body, "ApplyNow")?;
    if update == SettingsUpdate::default() && !apply_now {
        return Err(RestError::invalid(
            "nothing to change: give WebInstances, PlatformInstances, MultiPlatformPolicy or \
             ApplyNow",
        ));
    }
    Ok((update, apply_now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<(SettingsUpdate, bool), u32> {
        let body: Object = serde_json::from_str(json).unwrap();
        parse_update(&body).map_err(|e| e.code())
    }

    #[test]
    fn a_change_is_checked_in_full() {
        assert_eq!(
            parse(r#"{"WebInstances": 2}"#),
            Ok((
                SettingsUpdate {
                    web_instances: Some(2),
                    ..Default::default()
                },
                false
            ))
        );
        assert_eq!(
            parse(r#"{"MultiPlatformPolicy": "all", "PlatformInstances": 3, "ApplyNow": 1}"#),
            Ok((
                SettingsUpdate {
                    platform_instances: Some(3),
                    policy: Some(LoginPolicy::All),
                    ..Default::default()
                },
                true
            ))
        );
        assert_eq!(parse(r#"{"ApplyNow": 1}"#).map(|(_, now)| now), Ok(true));
        for bad in [
            r#"{}"#,
            r#"{"WebInstances": 0}"#,
            r#"{"WebInstances": 11}"#,
            r#"{"WebInstances": "2"}"#,
            r#"{"WebInstances": 1.5}"#,
            r#"{"PlatformInstances": 4}"#,
            r#"{"MultiPlatformPolicy": "quad"}"#,
            r#"{"MultiPlatformPolicy": 2}"#,
            r#"{"WebInstance": 2}"#,
            r#"{"WebInstances": 2, "ApplyNow": 2}"#,
        ] {
            assert_eq!(parse(bad), Err(70402), "{bad}");
        }
    }
}
