//! One `setTimeout`, RAII: dropping a [`Timeout`] clears it and frees its closure, so a
//! timer can never fire into a session that moved on. (What `gloo-timers` does, without
//! its dependency on `std`, which the size-optimised build leaves out.)

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &JsValue, ms: u32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

pub struct Timeout {
    id: JsValue,
    _closure: Closure<dyn FnMut()>,
}

impl Timeout {
    pub fn new(ms: u32, f: impl FnMut() + 'static) -> Timeout {
        let closure = Closure::<dyn FnMut()>::new(f);
        let id = set_timeout(closure.as_ref(), ms);
        Timeout {
            id,
            _closure: closure,
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.id);
    }
}
