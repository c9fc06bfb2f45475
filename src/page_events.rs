//! The page telling us the network or the tab changed: `online` / `offline` on `window`,
//! `visibilitychange` on `document`. RAII like the socket: a [`PageEvents`] removes its
//! listeners when dropped (on `destroy`).

use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use web_sys::EventTarget;

/// What happened, for the driver.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PageEvent {
    Online,
    Offline,
    /// The tab became visible again (after being hidden, maybe for hours, maybe asleep).
    Visible,
}

/// `navigator.onLine === false` (where there is a navigator).
pub fn offline_now() -> bool {
    let navigator =
        Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    navigator.is_object() && Reflect::get(&navigator, &"onLine".into()).ok() == Some(JsValue::FALSE)
}

struct Listener {
    target: EventTarget,
    name: &'static str,
    closure: Closure<dyn FnMut()>,
}

pub struct PageEvents {
    listeners: Vec<Listener>,
}

impl PageEvents {
    /// Listens where the page has these events (a worker has neither window nor document).
    pub fn attach(on_event: impl Fn(PageEvent) + Clone + 'static) -> PageEvents {
        let global = js_sys::global();
        let mut listeners = Vec::new();
        let window = Reflect::get(&global, &"window".into()).unwrap_or(JsValue::UNDEFINED);
        let document = Reflect::get(&global, &"document".into()).unwrap_or(JsValue::UNDEFINED);
        let mut add = |target: &JsValue, name: &'static str, f: Box<dyn FnMut()>| {
            if let Some(target) = target.dyn_ref::<EventTarget>() {
                let closure = Closure::wrap(f);
                let _ =
                    target.add_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
                listeners.push(Listener {
                    target: target.clone(),
                    name,
                    closure,
                });
            }
        };
        let f = on_event.clone();
        add(&window, "online", Box::new(move || f(PageEvent::Online)));
        let f = on_event.clone();
        add(&window, "offline", Box::new(move || f(PageEvent::Offline)));
        let doc = document.clone();
        add(
            &document,
            "visibilitychange",
            Box::new(move || {
                let state = Reflect::get(&doc, &"visibilityState".into())
                    .ok()
                    .and_then(|v| v.as_string());
                if state.as_deref() == Some("visible") {
                    on_event(PageEvent::Visible);
                }
            }),
        );
        PageEvents { listeners }
    }
}

impl Drop for PageEvents {
    fn drop(&mut self) {
        for l in &self.listeners {
            let _ = l
                .target
                .remove_event_listener_with_callback(l.name, l.closure.as_ref().unchecked_ref());
        }
    }
}
