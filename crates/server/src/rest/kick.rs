//! `im_open_login_svc/kick` (seed 002), and the rule that makes a kick revoke UserSigs.
//!
//! UserSig times are whole seconds, and a UserSig may be dated up to
//! [`USERSIG_MAX_FUTURE_SECS`] ahead of the server's clock (any further is refused at
//! login), so "issued before the kick" needs a rule: a kick in second `K` refuses every
//! UserSig with `TLS.time <= K + USERSIG_MAX_FUTURE_SECS` — every one that could have been
//! accepted before it, future-dated or not — and answers only once the wall clock has passed
//! that second. Every UserSig generated after the caller hears back therefore has a later
//! `TLS.time` and works.

use std::time::Duration;

use super::body::{self, Object};
use super::{detached, unix_now, Caller, Fields, RestError};
use crate::clock::unix_ms;
use crate::kicks::USERSIG_MAX_FUTURE_SECS;
use crate::state::AppState;

/// Longest a kick waits for the clock to leave its second. One second normally; more only
/// if the wall clock steps backwards meanwhile, when waiting longer would not help.
pub const MAX_SETTLE: Duration = Duration::from_secs(3);

/// Kicks every online instance of `UserID` (`KICKED_OUT` `REST_API_Kick`) and revokes its
/// UserSigs issued up to now. 70107 if the account does not exist.
pub async fn kick(state: &AppState, caller: &Caller, body: &Object) -> Result<Fields, RestError> {
    let user = body::user_id(body, "")?;
    let at = revocation_time();
    let app = caller.app.sdkappid;
    let online = {
        let backend = state.backend().clone();
        let user = user.clone();
        let sink = state.callbacks().sink(app);
        detached(async move {
            backend
                .kick_user(app, &user, at, sink)
                .await?
                .ok_or(RestError::AccountNotFound(user))
        })
        .await?
    };
    tracing::info!(app, user = %user, kicked_at = at, online, "REST kick");
    settle(at).await;
    Ok(Fields::new())
}

/// The kick time recorded for a kick or deletion now: the last `TLS.time` it revokes.
pub fn revocation_time() -> u64 {
    unix_now() + USERSIG_MAX_FUTURE_SECS
}

/// Returns once the wall clock has passed second `at` (see the module doc), waiting at
/// most [`MAX_SETTLE`].
pub async fn settle(at: u64) {
    let give_up = tokio::time::Instant::now() + MAX_SETTLE;
    let next_second = Duration::from_secs(at.saturating_add(1));
    loop {
        let now = Duration::from_millis(unix_ms());
        if now >= next_second {
            return;
        }
        let wake = tokio::time::Instant::now() + (next_second - now);
        if wake > give_up {
            tracing::warn!(
                at,
                "wall clock moved backwards during a kick; answering anyway"
            );
            return;
        }
        tokio::time::sleep_until(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_returns_in_the_next_second() {
        let at = unix_now();
        let started = std::time::Instant::now();
        settle(at).await;
        assert!(unix_now() > at);
        assert!(started.elapsed() <= Duration::from_millis(1100));
        // A past second: no wait at all.
        let started = std::time::Instant::now();
        settle(at - 5).await;
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
