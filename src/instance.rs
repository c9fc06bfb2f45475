//! This tab's instance id: stable across reconnects and reloads of the tab, never shared by
//! two live tabs.
//!
//! The id lives in `sessionStorage` (per tab, survives a reload), under one key per SDKAppID
//! (`TIM.create` keeps one live instance per SDKAppID), so the instance of an app gets the
//! same id after a reload, and creating it again after `destroy` reuses the key instead of
//! adding one: the storage does not grow however often a page creates and destroys. A
//! duplicated tab copies `sessionStorage`, so it would inherit the ids of a tab that is still
//! alive: each id is held under a Web Lock for the life of its instance, and a tab that
//! cannot get the lock within a moment (a reload's old document releases its locks as it
//! unloads; a live original never does) takes a fresh id. Without Web Locks (insecure
//! origins) the stored id is used as is; the server then supersedes the older socket, which
//! steps aside (`multipleAccount`) rather than fight. The server decides either way.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
function freshId() {
  const b = new Uint8Array(16);
  try { crypto.getRandomValues(b); } catch (_) { for (let i = 0; i < 16; i++) b[i] = Math.random() * 256; }
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
function store(key, id) { try { sessionStorage.setItem(key, id); } catch (_) {} }
// Resolves to a release function once `name` is held, or to null if it was not available
// within `waitMs` (0: only if free right now). Rejects when Web Locks refuse the request
// itself (WebKit refuses every request of a document removed from the page): that is not
// "taken", and asking again would spin.
function hold(name, waitMs) {
  return new Promise((resolve, reject) => {
    let release;
    const held = new Promise((r) => { release = r; });
    const ctl = waitMs ? new AbortController() : null;
    const timer = ctl && setTimeout(() => ctl.abort(), waitMs);
    navigator.locks.request(name, ctl ? { signal: ctl.signal } : { ifAvailable: true }, (lock) => {
      clearTimeout(timer);
      resolve(lock ? release : null);
      return lock ? held : undefined;
    }).catch((e) => {
      clearTimeout(timer);
      if (ctl && ctl.signal.aborted) resolve(null); else reject(e);
    });
  });
}
export async function claimInstance(key) {
  try {
    return await claim(key);
  } catch (_) {
    // Web Locks refused (e.g. a sandboxed frame): a fresh id, unshared by construction.
    return { id: freshId(), release() {} };
  }
}
async function claim(key) {
  let id = null;
  try { id = sessionStorage.getItem(key); } catch (_) {}
  if (!id) { id = freshId(); store(key, id); }
  if (!(globalThis.navigator && navigator.locks)) return { id, release() {} };
  let release = await hold('tim-wasm/' + id, 300);
  // A fresh id is free unless 128 random bits collide: a few tries are plenty.
  for (let tries = 0; !release && tries < 8; tries++) {
    id = freshId();
    store(key, id);
    release = await hold('tim-wasm/' + id, 0);
  }
  return { id, release: release || (() => {}) };
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = claimInstance)]
    fn claim_instance(key: &str) -> Promise;
}

/// Starts claiming the id of this page's instance for `sdkappid`; the Promise resolves to
/// `{ id, release }`.
pub fn claim(sdkappid: u32) -> Promise {
    let mut key = String::from("tim-wasm/instance/");
    push_decimal(&mut key, sdkappid);
    claim_instance(&key)
}

/// An id when the claim gave none (it always does, short of a broken page): random, so
/// never shared.
pub fn fallback_id() -> String {
    let mut id = String::from("r");
    push_decimal(&mut id, (crate::clock::random_seed() >> 32) as u32);
    push_decimal(&mut id, crate::clock::random_seed() as u32);
    id
}

/// Appends `n` in decimal; `to_string` would pull the formatting machinery into the wasm.
fn push_decimal(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// The `(id, release)` of a resolved claim.
pub fn parts(claimed: &JsValue) -> (Option<String>, Option<Function>) {
    let id = Reflect::get(claimed, &"id".into())
        .ok()
        .and_then(|v| v.as_string());
    let release = Reflect::get(claimed, &"release".into())
        .ok()
        .and_then(|v| v.dyn_into::<Function>().ok());
    (id, release)
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal() {
        for n in [0, 7, 10, 1_400_000_000, u32::MAX] {
            let mut s = String::new();
            super::push_decimal(&mut s, n);
            assert_eq!(s, format!("{n}"));
        }
    }
}
