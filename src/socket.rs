//! The browser WebSocket, RAII style (like `gloo`): the closures live as long as the socket;
//! dropping [`Socket`] detaches every handler and closes the connection, so a socket can never
//! call into a session that moved on.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

/// The page's `on_close`, called once: by the `close` event, or by an `error` event (which
/// WebKitGTK fires alone, with no `close` after it, for a connection refused or unreachable
/// at the TCP level).
type Ended = Rc<RefCell<Option<Box<dyn FnMut(u16)>>>>;

fn end(ended: &Ended, code: u16) {
    // Taken out first: no borrow is held while it runs (it may drop this socket).
    let on_close = ended.borrow_mut().take();
    if let Some(mut on_close) = on_close {
        on_close(code);
    }
}

impl Socket {
    /// Opens `url`; `on_message` gets each text frame, `on_close` the close code once (1006
    /// when the connection failed or dropped).
    pub fn open(
        url: &str,
        on_open: impl FnMut() + 'static,
        mut on_message: impl FnMut(String) + 'static,
        on_close: impl FnMut(u16) + 'static,
    ) -> Result<Socket, JsValue> {
        let ws = WebSocket::new(url)?;
        let on_open = Closure::<dyn FnMut()>::new(on_open);
        let on_message = Closure::new(move |e: MessageEvent| {
            // Binary frames are not part of the protocol; ignore them.
            if let Some(text) = e.data().as_string() {
                on_message(text);
            }
        });
        let ended: Ended = Rc::new(RefCell::new(Some(Box::new(on_close))));
        let on_error = {
            let ended = ended.clone();
            Closure::new(move |_: Event| end(&ended, 1006))
        };
        let on_close = Closure::new(move |e: CloseEvent| end(&ended, e.code()));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        })
    }

    pub fn send(&self, text: &str) {
        // A failed send means the socket is going away; its close event reports that.
        let _ = self.ws.send_with_str(text);
    }
}

/// Why a WebSocket could not even be created, for the login's error: this environment has
/// none (Node.js before 22 without its flag), or the URL is not one.
pub fn open_error(url: &str, e: &JsValue) -> String {
    if crate::options::get(&js_sys::global(), "WebSocket").is_undefined() {
        return "this environment has no WebSocket: Node.js has one from version 22 \
                (20 and 21: node --experimental-websocket)"
            .into();
    }
    let detail = crate::options::get(e, "message")
        .as_string()
        .unwrap_or_default();
    [
        "cannot open a WebSocket to ",
        url,
        " (",
        &detail,
        "): check TIM.create's serverURL",
    ]
    .concat()
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        if self.ws.ready_state() <= WebSocket::OPEN {
            let _ = self.ws.close_with_code(1000);
        }
    }
}
