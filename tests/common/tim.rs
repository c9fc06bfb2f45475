//! [`Tim`]: an SDK instance as a page holds it, the JS object `TIM.create` returns, driven
//! through its JS methods. It may come from this page's SDK or from a frame's ([`Frame`]),
//! so nothing here relies on this realm's `instanceof`.
//!
//! [`Frame`]: super::Frame

use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{obj, pause};

#[derive(Clone, Debug)]
pub struct Tim(pub JsValue);

impl Tim {
    /// `TIM.create(options)` of this page's SDK.
    pub fn create(options: &JsValue) -> Tim {
        Tim(tim_wasm::TIM::create(options.clone()))
    }

    /// `TIM.create(options)`, sure to be a new instance: `TIM.create` hands out the live
    /// instance of an SDKAppID, and a test that failed never reached its `destroy()`.
    pub async fn fresh(options: &JsValue) -> Tim {
        let old = Tim::create(options);
        old.destroy().await.ok();
        // Not at once (see web.rs `create_right_after_destroy_is_a_new_instance`), but soon.
        for _ in 0..100 {
            let tim = Tim::create(options);
            if !tim.is(&old) {
                return tim;
            }
            pause(10).await;
        }
        panic!("TIM.create still hands out the destroyed instance 1 s after destroy()");
    }

    /// `this.<method>(...args)`; a throw fails the test.
    fn call(&self, method: &str, args: &[JsValue]) -> JsValue {
        let f: Function = Reflect::get(&self.0, &method.into())
            .unwrap()
            .unchecked_into();
        let args: Array = args.iter().collect();
        Reflect::apply(&f, &self.0, &args).unwrap_or_else(|e| panic!("tim.{method}() threw {e:?}"))
    }

    /// The Promise a method returns, adopted into this realm (a frame's Promise is not an
    /// `instanceof` this page's).
    fn promise(&self, method: &str, args: &[JsValue]) -> Promise {
        Promise::resolve(&self.call(method, args))
    }

    /// `login({ userID, userSig })`, not awaited.
    pub fn login_start(&self, user: &str, usersig: &str) -> Promise {
        self.login_start_with(&obj(&[
            ("userID", user.into()),
            ("userSig", usersig.into()),
        ]))
    }

    /// `login(options)`, not awaited.
    pub fn login_start_with(&self, options: &JsValue) -> Promise {
        self.promise("login", std::slice::from_ref(options))
    }

    pub async fn login(&self, user: &str, usersig: &str) -> Result<JsValue, JsValue> {
        JsFuture::from(self.login_start(user, usersig)).await
    }

    pub async fn login_with(&self, options: &JsValue) -> Result<JsValue, JsValue> {
        JsFuture::from(self.login_start_with(options)).await
    }

    pub async fn logout(&self) -> Result<JsValue, JsValue> {
        JsFuture::from(self.promise("logout", &[])).await
    }

    pub fn destroy_start(&self) -> Promise {
        self.promise("destroy", &[])
    }

    pub async fn destroy(&self) -> Result<JsValue, JsValue> {
        JsFuture::from(self.destroy_start()).await
    }

    /// `on(name, handler, context)`; `context` undefined is the same as leaving it out.
    pub fn on(&self, name: &str, handler: &Function, context: &JsValue) {
        self.call("on", &[name.into(), handler.into(), context.clone()]);
    }

    pub fn once(&self, name: &str, handler: &Function, context: &JsValue) {
        self.call("once", &[name.into(), handler.into(), context.clone()]);
    }

    pub fn off(&self, name: &str, handler: &Function, context: &JsValue) {
        self.call("off", &[name.into(), handler.into(), context.clone()]);
    }

    pub fn login_user(&self) -> String {
        self.call("getLoginUser", &[]).as_string().unwrap()
    }

    pub fn is_ready(&self) -> bool {
        self.call("isReady", &[]).as_bool().unwrap()
    }

    /// 1 logged in, 2 logging in, 3 logged out.
    pub fn login_status(&self) -> u8 {
        self.call("getLoginStatus", &[]).as_f64().unwrap() as u8
    }

    /// `Object.is(this, other)`: the very same instance.
    pub fn is(&self, other: &Tim) -> bool {
        js_sys::Object::is(&self.0, &other.0)
    }
}
