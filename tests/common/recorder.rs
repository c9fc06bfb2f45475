//! [`Recorder`]: every event an instance emits, in order, with its `name` and `data`.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::{get, wait_until, Tim};

/// Every `TIM.EVENT` of the login surface.
pub const ALL_EVENTS: [&str; 6] = [
    "sdkStateReady",
    "sdkStateNotReady",
    "kickedOut",
    "netStateChange",
    "error",
    "sdkDestroy",
];

pub struct Recorder {
    seen: Rc<RefCell<Vec<JsValue>>>,
    handler: Closure<dyn FnMut(JsValue)>,
}

impl Recorder {
    /// A recorder listening (`on`) to every event of `tim`.
    pub fn on(tim: &Tim) -> Recorder {
        let r = Recorder::unattached();
        for name in ALL_EVENTS {
            tim.on(name, &r.function(), &JsValue::UNDEFINED);
        }
        r
    }

    /// A recorder listening to nothing yet: pass [`Recorder::function`] to `on`/`once`.
    pub fn unattached() -> Recorder {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let handler = Closure::new(move |e: JsValue| sink.borrow_mut().push(e));
        Recorder { seen, handler }
    }

    pub fn function(&self) -> Function {
        self.handler.as_ref().unchecked_ref::<Function>().clone()
    }

    /// The events themselves (`{ name, data }`), in order.
    pub fn events(&self) -> Vec<JsValue> {
        self.seen.borrow().clone()
    }

    /// `name` or `name:detail` (kicked-out type / net state) of each event, in order.
    pub fn names(&self) -> Vec<String> {
        self.seen.borrow().iter().map(label).collect()
    }

    pub fn clear(&self) {
        self.seen.borrow_mut().clear();
    }

    /// Whether `label` (as in [`Recorder::names`]) was seen within `ms`.
    pub async fn saw_within(&self, label: &str, ms: u32) -> bool {
        wait_until(ms, || self.names().iter().any(|n| n == label)).await
    }

    /// Waits (at most 3 s) for `label`; fails the test without it.
    pub async fn wait_for(&self, label: &str) {
        if !self.saw_within(label, 3_000).await {
            panic!("no {label} within 3 s; saw {:?}", self.names());
        }
    }
}

fn label(e: &JsValue) -> String {
    let name = get(e, "name").as_string().unwrap();
    let detail = get(e, "data.type")
        .as_string()
        .or(get(e, "data.state").as_string());
    match detail {
        Some(d) => format!("{name}:{d}"),
        None => name,
    }
}
