//! Drives the sans-IO session in the browser: executes its socket actions, arms its one
//! timer, settles Promises and calls the page's handlers.
//!
//! Rules that keep re-entrancy safe: no `RefCell` borrow is held while JS runs (handlers
//! may call back into the SDK), and only the outermost [`pump`] drains the queues, so events
//! reach handlers in the order the core produced them.

use alloc::rc::{Rc, Weak};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use js_sys::{Function, Promise};
use tim_session::{Event, Io, OpId, OpOk, SdkError, Session};
use wasm_bindgen::prelude::*;

use crate::clock::now_ms;
use crate::instance;
use crate::js;
use crate::listeners::Listeners;
use crate::log;
use crate::page_events::{self, PageEvent, PageEvents};
use crate::socket::Socket;
use crate::timer::Timeout;
use crate::wire;

pub type OpResult = Result<OpOk, SdkError>;

#[wasm_bindgen]
extern "C" {
    /// A Promise seen as a plain thenable, for `then` with plain functions.
    type Thenable;
    #[wasm_bindgen(method, js_name = then)]
    fn then_fns(this: &Thenable, on_fulfilled: &Function, on_rejected: &Function) -> Promise;
}

/// `promise.then(on_fulfilled, on_rejected)`. With the same `once_into_js` function for
/// both, exactly one call happens and the closure frees itself.
fn then(promise: &Promise, on_fulfilled: &Function, on_rejected: &Function) -> Promise {
    promise
        .unchecked_ref::<Thenable>()
        .then_fns(on_fulfilled, on_rejected)
}

/// A Promise's `resolve` and `reject`.
type Settle = (Function, Function);

pub struct Driver {
    pub session: RefCell<Session>,
    /// `<serverURL>/ws`.
    url: String,
    socket: RefCell<Option<Socket>>,
    /// The armed wake-up and its deadline (re-armed only when the deadline changes).
    timer: RefCell<Option<(u64, Timeout)>>,
    pub listeners: RefCell<Listeners>,
    /// Promises waiting for their op's outcome. Plain JS Promises rather than futures:
    /// `wasm-bindgen-futures` and a channel cost ~6 KB of wasm for no gain here.
    pending: RefCell<Vec<(OpId, Settle)>>,
    pumping: Cell<bool>,
    /// Releases the claim's Web Lock; set once claimed, called on `release`.
    unlock: RefCell<Option<Function>>,
    page: RefCell<Option<PageEvents>>,
    /// The page's `getUserSig`, if it gave one.
    get_usersig: Option<Function>,
}

impl Driver {
    pub fn new(
        session: Session,
        url: String,
        claim: Promise,
        get_usersig: Option<Function>,
    ) -> Rc<Driver> {
        let driver = Rc::new(Driver {
            session: RefCell::new(session),
            url,
            socket: RefCell::new(None),
            timer: RefCell::new(None),
            listeners: RefCell::new(Listeners::default()),
            pending: RefCell::new(Vec::new()),
            pumping: Cell::new(false),
            unlock: RefCell::new(None),
            page: RefCell::new(None),
            get_usersig,
        });
        let weak = Rc::downgrade(&driver);
        *driver.page.borrow_mut() = Some(PageEvents::attach(move |event| {
            with(&weak, |d, now| {
                let mut session = d.session.borrow_mut();
                match event {
                    PageEvent::Offline => session.handle_offline(now),
                    PageEvent::Online => session.handle_online(now),
                    PageEvent::Visible => session.handle_wake(now),
                }
            })
        }));
        if page_events::offline_now() {
            driver.session.borrow_mut().handle_offline(now_ms());
        }
        let weak = Rc::downgrade(&driver);
        let apply: Function = Closure::once_into_js(move |claimed: JsValue| {
            if let Some(d) = weak.upgrade() {
                d.apply_claim(&claimed);
            } else if let (_, Some(unlock)) = instance::parts(&claimed) {
                let _ = unlock.call0(&JsValue::NULL);
            }
        })
        .unchecked_into();
        let _ = then(&claim, &apply, &apply);
        driver
    }

    /// Takes the claimed instance id: a login waiting for it goes out. After `destroy`,
    /// just lets the lock go.
    fn apply_claim(self: &Rc<Self>, claimed: &JsValue) {
        let (id, unlock) = instance::parts(claimed);
        if self.session.borrow().is_destroyed() {
            if let Some(unlock) = unlock {
                let _ = unlock.call0(&JsValue::NULL);
            }
            return;
        }
        *self.unlock.borrow_mut() = unlock;
        let id = id.unwrap_or_else(instance::fallback_id);
        self.session.borrow_mut().set_instance(now_ms(), id);
        pump(self);
    }

    /// Runs a session command; the Promise settles with its outcome.
    pub fn command(self: &Rc<Self>, f: impl FnOnce(&mut Session, u64) -> OpId) -> Promise {
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        let op = f(&mut self.session.borrow_mut(), now_ms());
        if let Some(settle) = settle {
            self.pending.borrow_mut().push((op, settle));
        }
        pump(self);
        promise
    }

    /// Drops everything that can still call into JS or hold the page: socket, timer,
    /// handlers, the instance id's lock. Done by [`pump`] once destroyed.
    fn release(&self) {
        drop(self.socket.borrow_mut().take());
        drop(self.timer.borrow_mut().take());
        drop(self.page.borrow_mut().take());
        self.listeners.borrow_mut().clear();
        let unlock = self.unlock.borrow_mut().take();
        if let Some(unlock) = unlock {
            let _ = unlock.call0(&JsValue::NULL);
        }
    }
}

/// Executes what the session asks for until it asks for nothing more.
pub fn pump(driver: &Rc<Driver>) {
    if driver.pumping.replace(true) {
        return;
    }
    loop {
        let io = driver.session.borrow_mut().poll_io();
        if let Some(io) = io {
            execute(driver, io);
            continue;
        }
        let event = driver.session.borrow_mut().poll_event();
        match event {
            Some(Event::Done { op, result }) => settle(driver, op, result),
            Some(Event::RenewUserSig) => renew(driver),
            Some(event) => dispatch(driver, &event),
            None => break,
        }
    }
    if driver.session.borrow().is_destroyed() {
        // Only here, after the queues ran dry: a `destroy()` called from an event handler
        // still sends its logout and tells the other handlers `SDK_NOT_READY` first.
        driver.release();
    } else {
        arm_timer(driver);
    }
    driver.pumping.set(false);
}

fn execute(driver: &Rc<Driver>, io: Io) {
    match io {
        Io::Connect => {
            log::log(log::DEBUG, "connecting");
            let (a, b, c) = (
                Rc::downgrade(driver),
                Rc::downgrade(driver),
                Rc::downgrade(driver),
            );
            let socket = Socket::open(
                &driver.url,
                move || with(&a, |d, now| d.session.borrow_mut().handle_open(now)),
                move |text| with(&b, |d, now| on_text(d, now, &text)),
                move |code| with(&c, |d, now| d.session.borrow_mut().handle_close(now, code)),
            );
            match socket {
                Ok(s) => *driver.socket.borrow_mut() = Some(s),
                Err(_) => {
                    log::log(log::ERROR, "cannot open a WebSocket to the server URL");
                    driver.session.borrow_mut().handle_close(now_ms(), 1006);
                }
            }
        }
        Io::Send(frame) => {
            if let (Some(text), Some(socket)) =
                (wire::encode(&frame), driver.socket.borrow().as_ref())
            {
                socket.send(&text);
            }
        }
        Io::Close => drop(driver.socket.borrow_mut().take()),
    }
}

/// Runs a socket or timer callback against the driver, if it still exists, then pumps.
fn with(weak: &Weak<Driver>, f: impl FnOnce(&Rc<Driver>, u64)) {
    if let Some(driver) = weak.upgrade() {
        f(&driver, now_ms());
        pump(&driver);
    }
}

fn on_text(driver: &Rc<Driver>, now: u64, text: &str) {
    match wire::decode(text) {
        Some(frame) => driver.session.borrow_mut().handle_frame(now, frame),
        None => log::log(log::WARN, "ignored a frame the SDK does not understand"),
    }
}

#[wasm_bindgen(inline_js = "export function askUserSig(f, done) {
  let p;
  try { p = f(); } catch (e) { p = Promise.reject(e); }
  Promise.resolve(p).then((v) => done(typeof v === 'string' ? v : undefined), () => done(undefined));
}")]
extern "C" {
    /// Calls `getUserSig()` and hands `done` the UserSig, or `undefined` when it threw,
    /// rejected or returned something else than a string.
    #[wasm_bindgen(js_name = askUserSig)]
    fn ask_usersig(get_usersig: &Function, done: &JsValue);
}

/// Asks the page's `getUserSig` for a fresh UserSig: `renew` with it, or `renew_failed`.
fn renew(driver: &Rc<Driver>) {
    let Some(get_usersig) = &driver.get_usersig else {
        return;
    };
    let weak = Rc::downgrade(driver);
    let done = Closure::once_into_js(move |usersig: Option<String>| {
        with(&weak, |d, now| {
            let mut session = d.session.borrow_mut();
            match usersig {
                Some(usersig) => session.renew(now, &usersig),
                None => session.renew_failed(now),
            }
        })
    });
    ask_usersig(get_usersig, &done);
}

fn settle(driver: &Rc<Driver>, op: OpId, result: OpResult) {
    let settle = {
        let mut pending = driver.pending.borrow_mut();
        let i = pending.iter().position(|(o, _)| *o == op);
        i.map(|i| pending.swap_remove(i).1)
    };
    if let Some((resolve, reject)) = settle {
        let _ = match result {
            Ok(ok) => resolve.call1(&JsValue::NULL, &js::response(&ok)),
            Err(e) => reject.call1(&JsValue::NULL, &js::error(&e)),
        };
    }
}

impl Drop for Driver {
    /// Invariant 9: no Promise is left hanging, even if the page frees the object mid-call.
    fn drop(&mut self) {
        let error = js::error(&SdkError::new(
            tim_proto::SDK_UNCAUGHT_ERROR,
            "the SDK instance went away before the call completed",
        ));
        for (_, (_, reject)) in self.pending.get_mut().drain(..) {
            let _ = reject.call1(&JsValue::NULL, &error);
        }
        if let Some(unlock) = self.unlock.get_mut().take() {
            let _ = unlock.call0(&JsValue::NULL);
        }
    }
}

fn dispatch(driver: &Rc<Driver>, event: &Event) {
    let Some((name, value)) = js::event(event) else {
        return;
    };
    log::log(log::DEBUG, name);
    let handlers = driver.listeners.borrow().for_event(name);
    for handler in handlers {
        handler.call(&value);
    }
}

fn arm_timer(driver: &Rc<Driver>) {
    let deadline = driver.session.borrow().poll_timeout();
    let mut timer = driver.timer.borrow_mut();
    match deadline {
        None => *timer = None,
        Some(d) if timer.as_ref().is_some_and(|(t, _)| *t == d) => {}
        Some(d) => {
            let delay = d.saturating_sub(now_ms()).min(u64::from(u32::MAX)) as u32;
            let weak = Rc::downgrade(driver);
            let timeout = Timeout::new(delay, move || {
                with(&weak, |d, now| {
                    // This timer has fired: forget it so the next pump re-arms.
                    d.timer.borrow_mut().take();
                    d.session.borrow_mut().handle_timeout(now)
                })
            });
            *timer = Some((d, timeout));
        }
    }
}
