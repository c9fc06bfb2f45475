//! Drives the sans-IO session in the browser: executes its socket actions, arms its one
//! timer, settles Promises and calls the page's handlers.
//!
//! Rules that keep re-entrancy safe: no `RefCell` borrow is held while JS runs (handlers
//! may call back into the SDK), and only the outermost [`pump`] drains the queues, so events
//! reach handlers in the order the core produced them.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use gloo_timers::callback::Timeout;
use tim_session::{Event, Io, OpId, OpOk, SdkError, Session};
use wasm_bindgen::JsValue;

use crate::clock::now_ms;
use crate::js;
use crate::listeners::Listeners;
use crate::log;
use crate::socket::Socket;
use crate::wire;

pub type OpResult = Result<OpOk, SdkError>;

pub struct Driver {
    pub session: RefCell<Session>,
    /// `<serverURL>/ws`.
    url: String,
    socket: RefCell<Option<Socket>>,
    /// The armed wake-up and its deadline (re-armed only when the deadline changes).
    timer: RefCell<Option<(u64, Timeout)>>,
    pub listeners: RefCell<Listeners>,
    /// Promises waiting for their op's outcome.
    pending: RefCell<Vec<(OpId, oneshot::Sender<OpResult>)>>,
    pumping: Cell<bool>,
}

impl Driver {
    pub fn new(session: Session, url: String) -> Rc<Driver> {
        Rc::new(Driver {
            session: RefCell::new(session),
            url,
            socket: RefCell::new(None),
            timer: RefCell::new(None),
            listeners: RefCell::new(Listeners::default()),
            pending: RefCell::new(Vec::new()),
            pumping: Cell::new(false),
        })
    }

    /// Runs a session command and returns the receiver its outcome will arrive on.
    pub fn command(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Session, u64) -> OpId,
    ) -> oneshot::Receiver<OpResult> {
        let op = f(&mut self.session.borrow_mut(), now_ms());
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().push((op, tx));
        pump(self);
        rx
    }

    /// Drops everything that can still call into JS or hold the page: socket, timer,
    /// handlers. Called after `destroy`.
    pub fn release(&self) {
        drop(self.socket.borrow_mut().take());
        drop(self.timer.borrow_mut().take());
        self.listeners.borrow_mut().clear();
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
            Some(event) => dispatch(driver, &event),
            None => break,
        }
    }
    arm_timer(driver);
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
                move |_code| with(&c, |d, now| d.session.borrow_mut().handle_close(now)),
            );
            match socket {
                Ok(s) => *driver.socket.borrow_mut() = Some(s),
                Err(_) => {
                    log::log(log::ERROR, "cannot open a WebSocket to the server URL");
                    driver.session.borrow_mut().handle_close(now_ms());
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

fn settle(driver: &Rc<Driver>, op: OpId, result: OpResult) {
    let tx = {
        let mut pending = driver.pending.borrow_mut();
        let i = pending.iter().position(|(o, _)| *o == op);
        i.map(|i| pending.swap_remove(i).1)
    };
    if let Some(tx) = tx {
        let _ = tx.send(result);
    }
}

fn dispatch(driver: &Rc<Driver>, event: &Event) {
    let Some((name, value)) = js::event(event) else {
        return;
    };
    log::log(log::INFO, name);
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

/// Turns an op's outcome into what its Promise resolves or rejects with.
pub fn to_js(result: Result<OpResult, oneshot::Canceled>) -> Result<JsValue, JsValue> {
    match result {
        Ok(Ok(ok)) => Ok(js::response(&ok)),
        Ok(Err(e)) => Err(js::error(&e)),
        Err(oneshot::Canceled) => Err(js::error(&SdkError::new(
            tim_proto::SDK_UNCAUGHT_ERROR,
            "the SDK instance went away before the call completed",
        ))),
    }
}
