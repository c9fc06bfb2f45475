//! `openim/query_online_status`: who of `To_Account` is online, and with `IsNeedDetail: 1`
//! on which platforms. Read from the backend; accounts that are not online are
//! looked up in the store, so an unknown account is listed in `ErrorList` (70107, or 70402
//! for an invalid UserID) rather than reported "Offline".

use serde::Serialize;
use tim_proto::{Platform, ERR_ACCOUNT_NOT_FOUND, ERR_INVALID_PARAMETERS};

use super::accounts::accounts_exist;
use super::body::{self, Object};
use super::detached;
use super::{fields, Caller, Fields, RestError, MAX_QUERY_ACCOUNTS};
use crate::state::AppState;

/// Status of an account, and of each of its instances. Tencent's third value,
/// `PushOnline` (app in the background, reachable by push), has no web equivalent.
const ONLINE: &str = "Online";
const OFFLINE: &str = "Offline";

#[derive(Serialize)]
struct Answer {
    #[serde(rename = "QueryResult")]
    query_result: Vec<QueryResult>,
    #[serde(rename = "ErrorList")]
    error_list: Vec<ErrorItem>,
}

#[derive(Serialize)]
struct QueryResult {
    #[serde(rename = "To_Account")]
    to_account: String,
    #[serde(rename = "Status")]
    status: &'static str,
    #[serde(rename = "Detail", skip_serializing_if = "Option::is_none")]
    detail: Option<Vec<Detail>>,
}

#[derive(Serialize)]
struct Detail {
    #[serde(rename = "Platform")]
    platform: &'static str,
    #[serde(rename = "Status")]
    status: &'static str,
}

#[derive(Serialize)]
struct ErrorItem {
    #[serde(rename = "To_Account")]
    to_account: String,
    #[serde(rename = "ErrorCode")]
    error_code: u32,
}

/// The platform names of Tencent's `Detail` list, which calls Windows "PC".
pub fn detail_platform(platform: Platform) -> &'static str {
    match platform {
        Platform::Windows => "PC",
        other => other.as_str(),
    }
}

pub async fn query(state: &AppState, caller: &Caller, body: &Object) -> Result<Fields, RestError> {
    let app = caller.app.sdkappid;
    let accounts = body::string_list(body, "To_Account", MAX_QUERY_ACCOUNTS)?;
    let need_detail = body::optional_flag(body, "IsNeedDetail")?;
    // Online first (registry snapshot); whoever is not online is checked in the store.
    // An instance whose socket is gone (waiting for a resume) is not online.
    let platforms = online_platforms(state, app, &accounts).await?;
    let online: Vec<Option<Vec<Detail>>> = platforms
        .into_iter()
        .map(|platforms| {
            (!platforms.is_empty()).then(|| {
                platforms
                    .into_iter()
                    .map(|p| Detail {
                        platform: detail_platform(p),
                        status: ONLINE,
                    })
                    .collect()
            })
        })
        .collect();
    let offline: Vec<String> = accounts
        .iter()
        .zip(&online)
        .filter(|(user, on)| on.is_none() && body::check_user_id(user).is_ok())
        .map(|(user, _)| user.clone())
        .collect();
    let exist = if offline.is_empty() {
        Vec::new()
    } else {
        accounts_exist(state, app, offline).await?
    };
    let mut exist = exist.into_iter();
    let mut answer = Answer {
        query_result: Vec::with_capacity(accounts.len()),
        error_list: Vec::new(),
    };
    for (user, on) in accounts.into_iter().zip(online) {
        let outcome = match on {
            Some(detail) => Ok((ONLINE, detail)),
            None if body::check_user_id(&user).is_err() => Err(ERR_INVALID_PARAMETERS),
            None if exist.next() == Some(true) => Ok((OFFLINE, Vec::new())),
            None => Err(ERR_ACCOUNT_NOT_FOUND),
        };
        match outcome {
            Ok((status, detail)) => answer.query_result.push(QueryResult {
                to_account: user,
                status,
                detail: need_detail.then_some(detail),
            }),
            Err(error_code) => answer.error_list.push(ErrorItem {
                to_account: user,
                error_code,
            }),
        }
    }
    Ok(fields(answer))
}

/// The platforms of each account's connected instances, earliest login first (none for an
/// invalid UserID).
async fn online_platforms(
    state: &AppState,
    app: u32,
    accounts: &[String],
) -> Result<Vec<Vec<Platform>>, RestError> {
    let valid: Vec<String> = accounts
        .iter()
        .filter(|u| body::check_user_id(u).is_ok())
        .cloned()
        .collect();
    let backend = state.backend().clone();
    let mut found = detached(async move { Ok(backend.online(app, &valid).await?) })
        .await?
        .into_iter();
    Ok(accounts
        .iter()
        .map(|user| match body::check_user_id(user) {
            Ok(()) => found.next().unwrap_or_default(),
            Err(_) => Vec::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_is_pc_in_details() {
        assert_eq!(detail_platform(Platform::Windows), "PC");
        assert_eq!(detail_platform(Platform::Web), "Web");
        assert_eq!(detail_platform(Platform::IPhone), "iPhone");
    }
}
