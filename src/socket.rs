//! The browser WebSocket, RAII style (like `gloo`): the closures live as long as the socket;
//! dropping [`Socket`] detaches every handler and closes the connection, so a socket can never
//! call into a session that moved on.

use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Opens `url`; `on_message` gets each text frame, `on_close` the close code (1006 when
    /// the connection failed or dropped). An error event is always followed by a close
    /// event, so it needs no handler of its own.
    pub fn open(
        url: &str,
        on_open: impl FnMut() + 'static,
        mut on_message: impl FnMut(String) + 'static,
        mut on_close: impl FnMut(u16) + 'static,
    ) -> Result<Socket, JsValue> {
        let ws = WebSocket::new(url)?;
        let on_open = Closure::<dyn FnMut()>::new(on_open);
        let on_message = Closure::new(move |e: MessageEvent| {
            // Binary frames are not part of the protocol; ignore them.
            if let Some(text) = e.data().as_string() {
                on_message(text);
            }
        });
        let on_close = Closure::new(move |e: CloseEvent| on_close(e.code()));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    pub fn send(&self, text: &str) {
        // A failed send means the socket is going away; its close event reports that.
        let _ = self.ws.send_with_str(text);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        if self.ws.ready_state() <= WebSocket::OPEN {
            let _ = self.ws.close_with_code(1000);
        }
    }
}
