//! `TIM`: the class pages use, shaped like `tim-js-sdk`'s login surface.

use alloc::borrow::ToOwned;
use alloc::rc::Rc;
use alloc::string::String;

use js_sys::{Function, Promise, Reflect};
use tim_proto::{Platform, EVENTS, TYPES};
use tim_session::{Config, Session};
use wasm_bindgen::prelude::*;

use crate::clock::random_seed;
use crate::driver::Driver;
use crate::{instance, js, log};

/// One SDK instance (one tab's login). Create with `TIM.create({ SDKAppID, serverURL })`.
#[wasm_bindgen]
pub struct TIM {
    driver: Rc<Driver>,
}

#[wasm_bindgen]
impl TIM {
    /// `TIM.create({ SDKAppID, serverURL?, getUserSig? })`. A missing or invalid `SDKAppID`
    /// is reported by `login` (code 2000), as `tim-js-sdk` does. `serverURL` is timd's base
    /// URL (`ws://`, `wss://`, `http://` or `https://`); it defaults to the page's own
    /// origin. `getUserSig()`, returning a UserSig or a Promise of one, lets the SDK renew
    /// the session ahead of the UserSig's expiry.
    pub fn create(options: JsValue) -> TIM {
        let sdkappid = get(&options, "SDKAppID")
            .as_f64()
            .filter(|&n| n >= 1.0 && n <= f64::from(u32::MAX) && f64::from(n as u32) == n)
            .map_or(0, |n| n as u32);
        let base = get(&options, "serverURL")
            .as_string()
            .unwrap_or_else(page_origin);
        let get_usersig = get(&options, "getUserSig").dyn_into::<Function>().ok();
        let mut config = Config::new(sdkappid, Platform::Web, String::new());
        config.seed = random_seed();
        config.renew = get_usersig.is_some();
        let claim = instance::claim(sdkappid);
        TIM {
            driver: Driver::new(Session::new(config), ws_url(&base), claim, get_usersig),
        }
    }

    /// `login({ userID, userSig })`: resolves with `{ code: 0, data: { actionStatus,
    /// errorCode, errorInfo, repeatLogin? } }`, rejects with an `Error` carrying `code`.
    pub fn login(&self, options: JsValue) -> Promise {
        let user = get(&options, "userID").as_string().unwrap_or_default();
        let usersig = get(&options, "userSig").as_string().unwrap_or_default();
        // The socket opens now; the login frame waits for this tab's instance id if it is
        // still being claimed (see `instance`).
        self.driver.command(|s, now| s.login(now, &user, &usersig))
    }

    /// Ends this instance's session only; other tabs and devices of the user stay online.
    pub fn logout(&self) -> Promise {
        self.driver.command(|s, now| s.logout(now))
    }

    /// Logout, close the connection and release every listener and timer. Every later call
    /// rejects with `INVALID_OPERATION` (2905).
    pub fn destroy(&self) -> Promise {
        self.driver.command(|s, now| s.destroy(now))
    }

    /// `on(eventName, handler, context?)`. Ignored after `destroy`.
    pub fn on(&self, name: &str, handler: Function, context: JsValue) {
        if self.driver.session.borrow().is_destroyed() {
            log::log(log::WARN, "on() after destroy() is ignored");
            return;
        }
        self.driver
            .listeners
            .borrow_mut()
            .add(name.to_owned(), handler, context);
    }

    /// `off(eventName, handler, context?)`: without `context`, removes the handler for any.
    pub fn off(&self, name: &str, handler: Function, context: JsValue) {
        self.driver
            .listeners
            .borrow_mut()
            .remove(name, &handler, &context);
    }

    /// The logged-in UserID, or `''`.
    #[wasm_bindgen(js_name = getLoginUser)]
    pub fn get_login_user(&self) -> String {
        self.driver.session.borrow().login_user().to_owned()
    }

    /// Whether `SDK_READY` has fired and the session is still up.
    #[wasm_bindgen(js_name = isReady)]
    pub fn is_ready(&self) -> bool {
        self.driver.session.borrow().is_ready()
    }

    /// 0 logs everything … 4 nothing. Applies to every instance on the page.
    #[wasm_bindgen(js_name = setLogLevel)]
    pub fn set_log_level(&self, level: u8) {
        log::set_level(level);
    }
}

/// `{ EVENT, TYPES }`, from the protocol crate so they cannot drift from the server's names.
/// `index.js` attaches them to `TIM` as static properties.
#[wasm_bindgen(js_name = timConstants)]
pub fn tim_constants() -> JsValue {
    js::object(&[
        ("EVENT", js::str_map(EVENTS)),
        ("TYPES", js::str_map(TYPES)),
    ])
    .into()
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// `location.origin`, or `''` outside a page (then `login` fails with a network error).
fn page_origin() -> String {
    let location = get(&js_sys::global(), "location");
    get(&location, "origin").as_string().unwrap_or_default()
}

/// `<base>/ws` with an `http(s)` scheme turned into `ws(s)`.
fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http") {
        ["ws", rest].concat()
    } else {
        base.to_owned()
    };
    [base.as_str(), "/ws"].concat()
}

#[cfg(test)]
mod tests {
    use super::ws_url;

    #[test]
    fn server_url_becomes_the_ws_endpoint() {
        assert_eq!(ws_url("ws://127.0.0.1:9000"), "ws://127.0.0.1:9000/ws");
        assert_eq!(ws_url("http://h:1/"), "ws://h:1/ws");
        assert_eq!(ws_url("https://h"), "wss://h/ws");
        assert_eq!(ws_url("wss://h/base"), "wss://h/base/ws");
    }
}
