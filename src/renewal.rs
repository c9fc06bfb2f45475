//! Asking the page's `getUserSig` for a fresh UserSig. Its answer (a string, or a Promise
//! of one) counts only if it comes within [`ANSWER_TIMEOUT_MS`]: a throw, a rejection, a
//! non-string or no answer in time is a failure, which the session retries later. A
//! `getUserSig` that never settles therefore cannot stop renewal.

use std::pin::pin;

use futures::future::{select, Either};
use gloo_timers::future::TimeoutFuture;
use js_sys::{Function, Promise};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

/// How long `getUserSig` may take to answer.
pub const ANSWER_TIMEOUT_MS: u32 = 10_000;

/// The fresh UserSig, or `None` when `getUserSig` failed in any way.
pub async fn ask(get_usersig: Function) -> Option<String> {
    let answer = get_usersig.call0(&JsValue::NULL).ok()?;
    let answer = pin!(JsFuture::from(Promise::resolve(&answer)));
    let timeout = pin!(TimeoutFuture::new(ANSWER_TIMEOUT_MS));
    match select(answer, timeout).await {
        Either::Left((Ok(usersig), _)) => usersig.as_string().filter(|s| !s.is_empty()),
        _ => None,
    }
}
