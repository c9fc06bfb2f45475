//! [`Frame`]: another page of the same origin, as a second tab would be: an iframe that
//! loads this test's own wasm-bindgen glue as an ES module in its own realm, so it has its
//! own wasm instance, its own `TIM.create` cache and its own WebSocket. The frame's
//! `WebSocket` is wrapped before the SDK loads, so a test can drop its connection.
//!
//! Frames of one page share `sessionStorage`: the second one waits for the first's
//! instance-id lock (about 300 ms) and then takes a fresh id, as a duplicated tab does.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{obj, Tim, APP};

#[wasm_bindgen(inline_js = r#"
export function openFrame() {
  // The runner's page imports its glue as './wasm-bindgen-test'; the file is served as .js.
  // It is generated without a default wasm path: pass the runner's, as its page does.
  const glue = new URL('wasm-bindgen-test.js', location.href).href;
  const wasm = new URL('wasm-bindgen-test_bg.wasm', location.href).href;
  const frame = document.createElement('iframe');
  document.body.appendChild(frame);
  const w = frame.contentWindow;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the frame did not load the SDK in 10 s')), 10000);
    w.__timLoaded = () => { clearTimeout(timer); resolve(frame); };
    w.__timFailed = (e) => { clearTimeout(timer); reject(e); };
    const script = w.document.createElement('script');
    script.type = 'module';
    script.textContent = `
      const sockets = [];
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          sockets.push(this);
          this.pings = 0;
          this.pongs = 0;
          this.waiting = [];
          this.addEventListener('message', (e) => {
            if (e.data !== '"pong"') return;
            this.pongs++;
            this.waiting = this.waiting.filter((w) => (w[0] <= this.pongs ? (w[1](true), false) : true));
          });
          this.addEventListener('close', () => { this.waiting.forEach((w) => w[1](false)); this.waiting = []; });
        }
        send(data) {
          if (data === '"ping"') this.pings++;
          return super.send(data);
        }
      };
      window.__timSockets = sockets;
      try {
        const glue = await import(${JSON.stringify(glue)});
        await glue.default({ module_or_path: ${JSON.stringify(wasm)} });
        window.TIM = glue.TIM;
        window.__timLoaded();
      } catch (e) { window.__timFailed(e); }
    `;
    w.document.head.appendChild(script);
  });
}
export function describe(e) { return `${e} ${(e && e.stack) || ''}`; }
export function frameSockets(frame) { return frame.contentWindow.__timSockets.length; }
// Drops a connection under the SDK, as a network loss would (the SDK did not ask for it).
export function dropFrameSocket(frame, i) {
  frame.contentWindow.__timSockets[i].close(4999, 'test drops the connection');
}
// A round trip on the frame's latest socket: a "ping", resolved with true once its "pong" is in
// (the server answers in order: whatever it sent the frame before has arrived and the SDK has
// handled it); false without an open socket or if it closes first.
export function frameRoundTrip(frame) {
  const sockets = frame.contentWindow.__timSockets;
  const ws = sockets[sockets.length - 1];
  if (!ws || ws.readyState !== 1) return Promise.resolve(false);
  ws.send('"ping"');
  const n = ws.pings;
  return new Promise((resolve) => ws.waiting.push([n, resolve]));
}
// The frame's window tells its page the network went away (or came back), as a browser does.
export function frameNetwork(frame, online) {
  frame.contentWindow.dispatchEvent(new Event(online ? 'online' : 'offline'));
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = openFrame)]
    fn open_frame() -> Promise;
    #[wasm_bindgen(js_name = frameSockets)]
    fn frame_sockets(frame: &JsValue) -> u32;
    #[wasm_bindgen(js_name = dropFrameSocket)]
    fn drop_frame_socket(frame: &JsValue, i: u32);
    #[wasm_bindgen(js_name = frameNetwork)]
    fn frame_network(frame: &JsValue, online: bool);
    #[wasm_bindgen(js_name = frameRoundTrip)]
    fn frame_round_trip(frame: &JsValue) -> Promise;
    /// `String(e)` and its stack, for a failure message.
    fn describe(e: &JsValue) -> String;
}

pub struct Frame {
    element: JsValue,
}

impl Frame {
    /// A new iframe with the SDK loaded in it.
    pub async fn open() -> Frame {
        let element = JsFuture::from(open_frame())
            .await
            .unwrap_or_else(|e| panic!("the frame did not load the SDK: {}", describe(&e)));
        Frame { element }
    }

    /// The frame's `TIM.create(options)`.
    pub fn create(&self, options: &JsValue) -> Tim {
        let window = Reflect::get(&self.element, &"contentWindow".into()).unwrap();
        let class = Reflect::get(&window, &"TIM".into()).unwrap();
        let create: Function = Reflect::get(&class, &"create".into())
            .unwrap()
            .unchecked_into();
        Tim(create.call1(&class, options).unwrap())
    }

    /// The frame's `TIM.create({ SDKAppID: APP, serverURL: url })`.
    pub fn open_tim(&self, url: &str) -> Tim {
        self.create(&obj(&[("SDKAppID", APP.into()), ("serverURL", url.into())]))
    }

    /// How many WebSockets the frame has opened so far.
    pub fn sockets(&self) -> u32 {
        frame_sockets(&self.element)
    }

    /// Closes the frame's latest WebSocket with 4999, as a lost network would.
    pub fn drop_socket(&self) {
        drop_frame_socket(&self.element, self.sockets() - 1);
    }

    /// A round trip with the server on the frame's socket: once it is back (true), whatever
    /// the server sent the frame before has been handled by its SDK. False without an open
    /// socket, or if it closes before the answer.
    pub async fn round_trip(&self) -> bool {
        JsFuture::from(frame_round_trip(&self.element))
            .await
            .map(|v| v.is_truthy())
            .unwrap_or(false)
    }

    /// Fires `offline` (false) or `online` (true) on the frame's window: while offline the
    /// SDK does not try to reconnect.
    pub fn set_online(&self, online: bool) {
        frame_network(&self.element, online);
    }
}

impl Drop for Frame {
    /// Removing the frame ends its document: its sockets close, its wasm goes away.
    fn drop(&mut self) {
        if let Ok(remove) = Reflect::get(&self.element, &"remove".into()) {
            let _ = remove.unchecked_into::<Function>().call0(&self.element);
        }
    }
}
