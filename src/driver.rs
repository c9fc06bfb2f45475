//! Drives the sans-IO session in the browser: executes its socket actions, arms its one
//! timer, settles Promises and calls the page's handlers.
//!
//! Rules that keep re-entrancy safe: no `RefCell` borrow is held while JS runs (handlers
//! may call back into the SDK), and only the outermost [`pump`] drains the queues, so events
//! reach handlers in the order the core produced them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use futures::channel::oneshot;
use futures::future::{abortable, AbortHandle};
use gloo_timers::callback::Timeout;
use gloo_timers::future::TimeoutFuture;
use js_sys::{Function, Promise};
use tim_session::{Event, Io, OpId, OpOk, SdkError, Session};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local, JsFuture};

use crate::clock::now_ms;
use crate::listeners::Listeners;
use crate::options::get;
use crate::page_events::{self, PageEvent, PageEvents};
use crate::socket::{self, Socket};
use crate::{instance, log, renewal, values, wire};

pub type OpResult = Result<OpOk, SdkError>;

/// Longest delay `setTimeout` takes as given: larger ones wrap and fire at once (a UserSig
/// renewal months away would otherwise spin the timer while offline).
pub const MAX_TIMER_DELAY_MS: u64 = (1 << 31) - 1;

/// The `setTimeout` delay for a wake-up at `deadline`; a clamped timer fires early, finds
/// nothing due, and is armed again.
pub fn timer_delay(deadline: u64, now: u64) -> u32 {
    deadline.saturating_sub(now).min(MAX_TIMER_DELAY_MS) as u32
}

pub struct Driver {
    pub session: RefCell<Session>,
    /// `TIM.create`'s `serverURL`, if the page gave one.
    server_url: Option<String>,
    /// `<serverURL>/ws` (the page's origin by default), once [`Driver::start`] has run.
    url: RefCell<String>,
    /// Whether [`Driver::start`] has run.
    started: Cell<bool>,
    socket: RefCell<Option<Socket>>,
    /// The armed wake-up and its deadline (re-armed only when the deadline changes).
    timer: RefCell<Option<(u64, Timeout)>>,
    pub listeners: RefCell<Listeners>,
    /// Calls waiting for their op's outcome, with the Promise the page got. Dropping a
    /// sender (the driver going away) rejects its Promise: none is left hanging.
    pending: RefCell<Vec<(OpId, oneshot::Sender<OpResult>, Promise)>>,
    /// Events held back until the page has seen its login resolve (see [`hold_events`]);
    /// `Some` while holding.
    held: RefCell<Option<VecDeque<Event>>>,
    pumping: Cell<bool>,
    /// Releases the claim's Web Lock; set once claimed, called on `release`.
    unlock: RefCell<Option<Function>>,
    page: RefCell<Option<PageEvents>>,
    /// The page's `getUserSig`, if it gave one, and the question being asked of it.
    get_usersig: Option<Function>,
    renewal: RefCell<Option<AbortHandle>>,
    /// Called as `destroy` finishes, before any held event and the page's `SDK_DESTROY`
    /// handlers run (drops the `TIM.create` cache entry, as `tim-js-sdk` does).
    on_destroyed: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl Driver {
    /// Touches nothing of the page (no `window`, `location`, `sessionStorage`, Web Locks):
    /// `TIM.create` runs during server-side rendering too. [`Driver::start`] does, at the
    /// first `login`.
    pub fn new(
        session: Session,
        server_url: Option<String>,
        get_usersig: Option<Function>,
    ) -> Rc<Driver> {
        Rc::new(Driver {
            session: RefCell::new(session),
            server_url,
            url: RefCell::new(String::new()),
            started: Cell::new(false),
            socket: RefCell::new(None),
            timer: RefCell::new(None),
            listeners: RefCell::new(Listeners::default()),
            pending: RefCell::new(Vec::new()),
            pumping: Cell::new(false),
            unlock: RefCell::new(None),
            page: RefCell::new(None),
            get_usersig,
            renewal: RefCell::new(None),
            held: RefCell::new(None),
            on_destroyed: RefCell::new(None),
        })
    }

    /// What a login needs of the page, once: the server URL (default: the page's origin),
    /// the browser's online / offline / visibility events, and this tab's instance id
    /// (`sessionStorage`, under a Web Lock: see `instance`), claimed while the socket opens.
    pub fn start(self: &Rc<Self>) {
        if self.started.replace(true) || self.session.borrow().is_destroyed() {
            return;
        }
        let origin = page_origin();
        let url = ws_url(self.server_url.as_deref().unwrap_or(&origin));
        *self.url.borrow_mut() = url.clone();
        self.session.borrow_mut().set_endpoint(url, origin);
        let weak = Rc::downgrade(self);
        *self.page.borrow_mut() = Some(PageEvents::attach(move |event| {
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
            self.session.borrow_mut().handle_offline(now_ms());
        }
        let claim = instance::claim(self.session.borrow().config().sdkappid);
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            let claimed = JsFuture::from(claim).await;
            let claimed = claimed.unwrap_or(JsValue::UNDEFINED);
            match weak.upgrade() {
                Some(d) => d.apply_claim(&claimed),
                None => {
                    if let (_, Some(unlock)) = instance::parts(&claimed) {
                        let _ = unlock.call0(&JsValue::NULL);
                    }
                }
            }
        });
    }

    /// Runs `f` as `destroy` finishes, before the `SDK_DESTROY` handlers.
    pub fn on_destroyed(&self, f: impl FnOnce() + 'static) {
        *self.on_destroyed.borrow_mut() = Some(Box::new(f));
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
        let op = f(&mut self.session.borrow_mut(), now_ms());
        let (tx, rx) = oneshot::channel();
        let promise = future_to_promise(async move {
            match rx.await {
                Ok(Ok(ok)) => Ok(values::response(&ok)),
                Ok(Err(e)) => Err(values::error(&e)),
                Err(oneshot::Canceled) => Err(values::error(&SdkError::new(
                    tim_proto::SDK_UNCAUGHT_ERROR,
                    "the SDK instance went away before the call completed",
                ))),
            }
        });
        self.pending.borrow_mut().push((op, tx, promise.clone()));
        pump(self);
        promise
    }

    /// Drops everything that can still call into JS or hold the page: socket, timer,
    /// handlers, a pending `getUserSig`, the instance id's lock. Done by [`pump`] once
    /// destroyed.
    fn release(&self) {
        drop(self.socket.borrow_mut().take());
        drop(self.timer.borrow_mut().take());
        drop(self.page.borrow_mut().take());
        if let Some(renewal) = self.renewal.borrow_mut().take() {
            renewal.abort();
        }
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
            Some(event) => {
                if event == Event::Destroyed {
                    // The `TIM.create` entry goes first (a `TIM.create` right after
                    // `destroy()` resolves, or in an `SDK_DESTROY` handler, makes a new
                    // instance), and held events go out now, before `SDK_DESTROY`.
                    let on_destroyed = driver.on_destroyed.borrow_mut().take();
                    if let Some(f) = on_destroyed {
                        f();
                    }
                    release_held(driver);
                }
                // Behind held events, or now (never while `held` is borrowed: handlers
                // may call back into the SDK).
                let event = match driver.held.borrow_mut().as_mut() {
                    Some(held) => {
                        held.push_back(event);
                        None
                    }
                    None => Some(event),
                };
                if let Some(event) = event {
                    dispatch(driver, &event);
                }
            }
            None => break,
        }
    }
    finish_pump(driver);
    driver.pumping.set(false);
}

/// After the queues ran dry: release a destroyed instance (unless events are still held for
/// the page), else re-arm the timer.
fn finish_pump(driver: &Rc<Driver>) {
    let holding = driver.held.borrow().is_some();
    if !holding && driver.session.borrow().is_destroyed() {
        // Only here, after the queues ran dry: a `destroy()` called from an event handler
        // still sends its logout and tells the other handlers `SDK_NOT_READY` first.
        driver.release();
    } else {
        arm_timer(driver);
    }
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
            let url = driver.url.borrow().clone();
            let socket = Socket::open(
                &url,
                move || with(&a, |d, now| d.session.borrow_mut().handle_open(now)),
                move |text| with(&b, |d, now| on_text(d, now, &text)),
                move |code| with(&c, |d, now| d.session.borrow_mut().handle_close(now, code)),
            );
            match socket {
                Ok(s) => *driver.socket.borrow_mut() = Some(s),
                Err(e) => {
                    let why = socket::open_error(&url, &e);
                    log::log(log::ERROR, &why);
                    driver
                        .session
                        .borrow_mut()
                        .handle_connect_failed(now_ms(), &why);
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

/// Asks the page's `getUserSig` for a fresh UserSig: `renew` with it, or `renew_failed`.
fn renew(driver: &Rc<Driver>) {
    let Some(get_usersig) = driver.get_usersig.clone() else {
        return;
    };
    let weak = Rc::downgrade(driver);
    let (ask, handle) = abortable(async move {
        let usersig = renewal::ask(get_usersig).await;
        with(&weak, |d, now| {
            d.renewal.borrow_mut().take();
            let mut session = d.session.borrow_mut();
            match usersig {
                Some(usersig) => session.renew(now, &usersig),
                None => session.renew_failed(now),
            }
        })
    });
    if let Some(old) = driver.renewal.borrow_mut().replace(handle) {
        old.abort();
    }
    spawn_local(async move {
        let _ = ask.await;
    });
}

fn settle(driver: &Rc<Driver>, op: OpId, result: OpResult) {
    let call = {
        let mut pending = driver.pending.borrow_mut();
        let i = pending.iter().position(|(o, _, _)| *o == op);
        i.map(|i| pending.swap_remove(i))
    };
    if let Some((_, sender, promise)) = call {
        let logged_in = matches!(result, Ok(OpOk::Login { repeat: false }));
        // Any other call settling while a login's events are still held (its zero-delay
        // timer is late, e.g. on a busy page): they go out first, so a page awaiting this
        // call has seen them, and the events this call causes, when it resumes.
        if !logged_in && driver.held.borrow().is_some() {
            release_held(driver);
        }
        let _ = sender.send(result);
        if logged_in {
            hold_events(driver, &promise);
        }
    }
}

/// As with `tim-js-sdk`, whose `SDK_READY` comes after `login()` resolves (a timer and a
/// round trip later): the events that follow a login, its `SDK_READY` first, wait until the
/// login's Promise has resolved and every reaction to it has run (the next task), so a page
/// that calls `tim.on(SDK_READY, …)` after `await tim.login(…)`, however many `then`s
/// deep, still sees it. The wait is a zero-delay timer after the resolution.
fn hold_events(driver: &Rc<Driver>, login: &Promise) {
    let mut held = driver.held.borrow_mut();
    if held.is_some() {
        return;
    }
    *held = Some(VecDeque::new());
    let weak = Rc::downgrade(driver);
    let login = JsFuture::from(login.clone());
    spawn_local(async move {
        let _ = login.await;
        TimeoutFuture::new(0).await;
        if let Some(d) = weak.upgrade() {
            release_held(&d);
        }
    });
}

/// Dispatches the held events in order; events that handlers cause meanwhile queue behind
/// them.
fn release_held(driver: &Rc<Driver>) {
    loop {
        let next = driver
            .held
            .borrow_mut()
            .as_mut()
            .and_then(VecDeque::pop_front);
        match next {
            Some(event) => dispatch(driver, &event),
            None => break,
        }
    }
    *driver.held.borrow_mut() = None;
    if !driver.pumping.get() {
        finish_pump(driver);
    }
}

fn dispatch(driver: &Rc<Driver>, event: &Event) {
    let sdkappid = driver.session.borrow().config().sdkappid;
    let Some((name, value)) = values::event(event, sdkappid) else {
        return;
    };
    log::log(log::DEBUG, name);
    let handlers = driver.listeners.borrow_mut().take_for_event(name);
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
            let weak = Rc::downgrade(driver);
            let timeout = Timeout::new(timer_delay(d, now_ms()), move || {
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

/// `location.origin`, or `''` outside a page (then a login without `serverURL` fails with
/// a network error saying so).
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
    use super::*;

    #[test]
    fn server_url_becomes_the_ws_endpoint() {
        assert_eq!(ws_url("ws://127.0.0.1:9000"), "ws://127.0.0.1:9000/ws");
        assert_eq!(ws_url("http://h:1/"), "ws://h:1/ws");
        assert_eq!(ws_url("https://h"), "wss://h/ws");
        assert_eq!(ws_url("wss://h/base"), "wss://h/base/ws");
    }

    #[test]
    fn timer_delays_never_wrap() {
        assert_eq!(timer_delay(1_000, 400), 600);
        assert_eq!(timer_delay(400, 1_000), 0);
        // A renewal half a year away (offline, long-lived UserSig): clamped, not wrapped.
        let half_year = 180 * 86_400_000;
        assert_eq!(timer_delay(half_year, 0), (1u32 << 31) - 1);
        assert_eq!(timer_delay(u64::MAX, 0), (1u32 << 31) - 1);
        assert!(i32::try_from(timer_delay(u64::MAX, 0)).is_ok());
    }
}
