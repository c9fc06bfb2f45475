//! `TIM`: the class pages use, shaped like `tim-js-sdk`'s login surface.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use tim_proto::{Platform, ERROR_CODES, EVENTS, TYPES};
use tim_session::{Config, Session};
use wasm_bindgen::prelude::*;

use crate::clock::random_seed;
use crate::driver::Driver;
use crate::options::{CreateOptions, LoginOptions};
use crate::{log, values};

/// One SDK instance (one tab's login). Create with `TIM.create({ SDKAppID, serverURL })`.
#[wasm_bindgen]
pub struct TIM {
    driver: Rc<Driver>,
}

thread_local! {
    /// The live instance of each SDKAppID: `TIM.create` hands it out again until it is
    /// destroyed, so the modules of one page share one login (as with `tim-js-sdk`).
    static CREATED: RefCell<Vec<(u32, JsValue)>> = const { RefCell::new(Vec::new()) };
}

#[wasm_bindgen]
impl TIM {
    /// `TIM.create({ SDKAppID, serverURL?, getUserSig? })`. The same SDKAppID (a number or
    /// a numeric string) gives the same instance until that one is destroyed. A missing or
    /// invalid `SDKAppID` is reported by `login` (code 2000), as `tim-js-sdk` does.
    /// `serverURL` is timd's base URL (`ws://`, `wss://`, `http://` or `https://`); it
    /// defaults to the page's own origin. `getUserSig()`, returning a UserSig or a Promise
    /// of one, lets the SDK renew the session ahead of the UserSig's expiry.
    pub fn create(options: JsValue) -> JsValue {
        let options = CreateOptions::from_js(&options);
        let sdkappid = options.sdkappid;
        if let Some(tim) = cached(sdkappid) {
            return tim;
        }
        let get_usersig = options.get_usersig;
        let mut config = Config::new(sdkappid, Platform::Web, String::new());
        config.seed = random_seed();
        config.renew = get_usersig.is_some();
        // Nothing of the page is touched until `login` (server-side rendering imports and
        // creates too): the instance id is claimed, and page events listened to, from there.
        let driver = Driver::new(Session::new(config), options.server_url, get_usersig);
        let tim = JsValue::from(TIM {
            driver: driver.clone(),
        });
        if sdkappid != 0 {
            CREATED.with(|c| c.borrow_mut().push((sdkappid, tim.clone())));
            let me = tim.clone();
            driver.on_destroyed(move || {
                CREATED.with(|c| c.borrow_mut().retain(|(_, t)| *t != me));
            });
        }
        tim
    }

    /// `login({ userID, userSig })`: resolves with `{ code: 0, data: { actionStatus,
    /// errorCode, errorInfo, repeatLogin? } }`, rejects with an `Error` carrying `code`.
    pub fn login(&self, options: JsValue) -> Promise {
        let LoginOptions { user, usersig } = LoginOptions::from_js(&options);
        // The socket opens now; the login frame waits for this tab's instance id if it is
        // still being claimed (see `instance`).
        self.driver.start();
        self.driver.command(|s, now| s.login(now, &user, &usersig))
    }

    /// Ends this instance's session only; other tabs and devices of the user stay online.
    pub fn logout(&self) -> Promise {
        self.driver.command(|s, now| s.logout(now))
    }

    /// Logout, close the connection, emit `SDK_DESTROY`, then release every listener and
    /// timer. Every later call rejects with `INVALID_OPERATION` (2905), and `TIM.create`
    /// makes a new instance.
    pub fn destroy(&self) -> Promise {
        self.driver.command(|s, now| s.destroy(now))
    }

    /// `on(eventName, handler, context?)`. Ignored after `destroy`.
    pub fn on(&self, name: &str, handler: Function, context: JsValue) {
        self.listen(name, handler, context, false);
    }

    /// `once(eventName, handler, context?)`: like `on`, for the next such event only.
    pub fn once(&self, name: &str, handler: Function, context: JsValue) {
        self.listen(name, handler, context, true);
    }

    fn listen(&self, name: &str, handler: Function, context: JsValue, once: bool) {
        if self.driver.session.borrow().is_destroyed() {
            log::log(log::WARN, "on() after destroy() is ignored");
            return;
        }
        self.driver
            .listeners
            .borrow_mut()
            .add(name.to_owned(), handler, context, once);
    }

    /// `off(eventName, handler, context?)`: without `context`, removes the handler for any.
    pub fn off(&self, name: &str, handler: Function, context: JsValue) {
        self.driver
            .listeners
            .borrow_mut()
            .remove(name, &handler, &context);
    }

    /// 1 logged in, 2 logging in, 3 logged out (V2TIM's values, as seed 001 asks).
    #[wasm_bindgen(js_name = getLoginStatus)]
    pub fn get_login_status(&self) -> u8 {
        self.driver.session.borrow().login_status()
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

/// `{ EVENT, TYPES, ERROR_CODE }`, from the protocol crate so they cannot drift from the
/// server's names and codes. `index.js` attaches them to `TIM` as static properties.
#[wasm_bindgen(js_name = timConstants)]
pub fn tim_constants() -> JsValue {
    let constants = js_sys::Object::new();
    let _ = Reflect::set(&constants, &"EVENT".into(), &values::str_map(EVENTS));
    let _ = Reflect::set(&constants, &"TYPES".into(), &values::str_map(TYPES));
    let _ = Reflect::set(
        &constants,
        &"ERROR_CODE".into(),
        &values::code_map(ERROR_CODES),
    );
    constants.into()
}

/// The live instance created for `sdkappid`, if any.
fn cached(sdkappid: u32) -> Option<JsValue> {
    if sdkappid == 0 {
        return None;
    }
    CREATED.with(|c| {
        c.borrow()
            .iter()
            .find(|(id, _)| *id == sdkappid)
            .map(|(_, tim)| tim.clone())
    })
}
