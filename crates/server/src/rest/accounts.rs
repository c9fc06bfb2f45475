//! Account import, check and delete (`im_open_login_svc/account_import`,
//! `multiaccount_import`, `account_check`, `account_delete`). Accounts are UserIDs in the
//! store's `accounts` table; a first login with a valid UserSig also creates one.

use serde::Serialize;
use tim_proto::{ERR_ACCOUNT_NOT_FOUND, ERR_INVALID_PARAMETERS};

use super::body::{self, Object};
use super::kick::{revocation_time, settle};
use super::{detached, fields, Caller, Fields, RestError, MAX_BATCH};
use crate::state::AppState;

/// `account_import`: creates `UserID` (already existing is fine).
pub async fn import(state: &AppState, caller: &Caller, body: &Object) -> Result<Fields, RestError> {
    let user = body::user_id(body, "")?;
    // Accepted for compatibility and type-checked, but not stored: timd has no profiles.
    for name in ["Nick", "FaceUrl"] {
        body::optional_string(body, name)?;
    }
    let users = vec![user.clone()];
    let new = import_accounts(state, caller.app.sdkappid, users).await?;
    tracing::info!(user = %user, new = new == 1, "REST account_import");
    Ok(Fields::new())
}

#[derive(Serialize)]
struct MultiImportAnswer {
    #[serde(rename = "FailAccounts")]
    fail_accounts: Vec<String>,
}

/// `multiaccount_import`: creates each valid UserID of `Accounts`; invalid ones are listed
/// in `FailAccounts` and the rest are still imported.
pub async fn multi_import(
    state: &AppState,
    caller: &Caller,
    body: &Object,
) -> Result<Fields, RestError> {
    let accounts = body::string_list(body, "Accounts", MAX_BATCH)?;
    let (valid, fail_accounts): (Vec<String>, Vec<String>) = accounts
        .into_iter()
        .partition(|id| body::check_user_id(id).is_ok());
    let count = valid.len();
    let new = if valid.is_empty() {
        0
    } else {
        import_accounts(state, caller.app.sdkappid, valid).await?
    };
    tracing::info!(
        imported = count,
        new,
        failed = fail_accounts.len(),
        "REST multiaccount_import"
    );
    Ok(fields(MultiImportAnswer { fail_accounts }))
}

/// One `ResultItem` of `account_delete` / `account_check`.
#[derive(Serialize)]
struct ResultItem {
    #[serde(rename = "UserID")]
    user_id: String,
    #[serde(rename = "ResultCode")]
    result_code: u32,
    #[serde(rename = "ResultInfo")]
    result_info: String,
    #[serde(rename = "AccountStatus", skip_serializing_if = "Option::is_none")]
    account_status: Option<&'static str>,
}

#[derive(Serialize)]
struct ResultItems {
    #[serde(rename = "ResultItem")]
    result_item: Vec<ResultItem>,
}

/// The valid UserIDs of `ids` (to hand to the store), in order.
fn valid_ids(ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| body::check_user_id(id).is_ok())
        .cloned()
        .collect()
}

/// Pairs each of `ids` with the store's answer for it (answers are for the valid ones, in
/// order), or the reason it is invalid.
fn per_item<T: Copy>(ids: Vec<String>, answers: &[T]) -> Vec<(String, Result<T, RestError>)> {
    let mut answers = answers.iter();
    ids.into_iter()
        .map(|id| {
            let outcome = match body::check_user_id(&id) {
                Ok(()) => Ok(*answers.next().expect("one answer per valid id")),
                Err(e) => Err(e),
            };
            (id, outcome)
        })
        .collect()
}

/// `account_delete`: deletes each account of `DeleteItem`. A deleted account's online
/// instances are kicked (`REST_API_Kick`) and its UserSigs issued until now are revoked,
/// so only a newly generated UserSig can log in (and re-create it).
pub async fn delete(state: &AppState, caller: &Caller, body: &Object) -> Result<Fields, RestError> {
    let ids = body::item_user_ids(body, "DeleteItem", MAX_BATCH)?;
    let valid = valid_ids(&ids);
    let at = revocation_time();
    let app = caller.app.sdkappid;
    let deleted = if valid.is_empty() {
        Vec::new()
    } else {
        let backend = state.backend().clone();
        let sink = state.callbacks().sink(app);
        detached(async move {
            let outcomes = backend.delete_accounts(app, &valid, at, sink).await?;
            for (user, online) in valid.iter().zip(&outcomes) {
                if let Some(online) = online {
                    tracing::info!(app, user = %user, kicked_at = at, online, "REST account_delete");
                }
            }
            Ok(outcomes.iter().map(Option::is_some).collect::<Vec<bool>>())
        })
        .await?
    };
    let any_deleted = deleted.iter().any(|d| *d);
    let result_item = per_item(ids, &deleted)
        .into_iter()
        .map(|(user_id, outcome)| {
            let (result_code, result_info) = match outcome {
                Ok(true) => (0, String::new()),
                Ok(false) => (
                    ERR_ACCOUNT_NOT_FOUND,
                    RestError::AccountNotFound(user_id.clone()).to_string(),
                ),
                Err(e) => (ERR_INVALID_PARAMETERS, e.to_string()),
            };
            ResultItem {
                user_id,
                result_code,
                result_info,
                account_status: None,
            }
        })
        .collect();
    if any_deleted {
        settle(at).await;
    }
    Ok(fields(ResultItems { result_item }))
}

/// `account_check`: `Imported` / `NotImported` for each account of `CheckItem`.
pub async fn check(state: &AppState, caller: &Caller, body: &Object) -> Result<Fields, RestError> {
    let ids = body::item_user_ids(body, "CheckItem", MAX_BATCH)?;
    let valid = valid_ids(&ids);
    let exist = if valid.is_empty() {
        Vec::new()
    } else {
        accounts_exist(state, caller.app.sdkappid, valid).await?
    };
    let result_item = per_item(ids, &exist)
        .into_iter()
        .map(|(user_id, outcome)| {
            let (result_code, result_info, imported) = match outcome {
                Ok(imported) => (0, String::new(), imported),
                Err(e) => (ERR_INVALID_PARAMETERS, e.to_string(), false),
            };
            ResultItem {
                user_id,
                result_code,
                result_info,
                account_status: Some(if imported { "Imported" } else { "NotImported" }),
            }
        })
        .collect();
    Ok(fields(ResultItems { result_item }))
}

/// Registers `users`; returns how many were new.
async fn import_accounts(
    state: &AppState,
    app: u32,
    users: Vec<String>,
) -> Result<usize, RestError> {
    let backend = state.backend().clone();
    detached(async move { Ok(backend.import(app, &users).await?) }).await
}

/// Which of `users` have an account.
pub async fn accounts_exist(
    state: &AppState,
    app: u32,
    users: Vec<String>,
) -> Result<Vec<bool>, RestError> {
    let backend = state.backend().clone();
    detached(async move { Ok(backend.accounts_exist(app, &users).await?) }).await
}
