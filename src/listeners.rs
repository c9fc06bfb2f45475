//! The page's event handlers: `on(name, handler, context?)`, `once(...)`, `off(...)`.

use js_sys::Function;
use wasm_bindgen::JsValue;

#[derive(Clone)]
pub struct Listener {
    name: String,
    handler: Function,
    context: JsValue,
    /// Added with `once`: removed as it is called.
    once: bool,
}

#[derive(Default)]
pub struct Listeners {
    list: Vec<Listener>,
}

impl Listeners {
    /// Adds a handler. The same handler added twice is called twice, as `tim-js-sdk`'s
    /// EventEmitter does (pages written for it may count on that).
    pub fn add(&mut self, name: String, handler: Function, context: JsValue, once: bool) {
        self.list.push(Listener {
            name,
            handler,
            context,
            once,
        });
    }

    /// Removes matching handlers; with `context` undefined, any context matches.
    pub fn remove(&mut self, name: &str, handler: &Function, context: &JsValue) {
        self.list.retain(|l| {
            !(l.name == name
                && l.handler == *handler
                && (context.is_undefined() || l.context == *context))
        });
    }

    /// The handlers to call for `name`, copied so none is called while the list is
    /// borrowed; `once` handlers leave the list here, before they run.
    pub fn take_for_event(&mut self, name: &str) -> Vec<Listener> {
        let handlers: Vec<Listener> = self
            .list
            .iter()
            .filter(|l| l.name == name)
            .cloned()
            .collect();
        self.list.retain(|l| !(l.once && l.name == name));
        handlers
    }

    pub fn clear(&mut self) {
        self.list.clear();
    }
}

impl Listener {
    /// Calls the handler; a throwing handler is reported and does not stop the others.
    pub fn call(&self, event: &JsValue) {
        let this = if self.context.is_undefined() {
            JsValue::NULL
        } else {
            self.context.clone()
        };
        if let Err(e) = self.handler.call1(&this, event) {
            web_sys::console::error_2(&"TIM: an event handler threw".into(), &e);
        }
    }
}
