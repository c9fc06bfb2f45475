// The browser's half: hydrates the server's HTML (the same DOM nodes, not a new render), then
// waits for the test to log in.
import { h, hydrate } from 'preact';
import TIM from 'tim-wasm';
import { App, tim } from './app.js';

const rendered = document.getElementById('status');
window.serverText = rendered && rendered.textContent;
hydrate(h(App), document.getElementById('app'));
window.sameNode = rendered !== null && document.getElementById('status') === rendered;
window.tim = tim;
window.events = [];
for (const name of Object.values(TIM.EVENT)) tim.on(name, (e) => events.push(e.name));
window.touchedBeforeLogin = [...window.touched];
const q = new URLSearchParams(location.search);
window.login = () => tim.login({ userID: q.get('user'), userSig: q.get('sig') })
  .then((r) => ({ data: r.data }), (e) => ({ error: { code: e.code, message: e.message } }));
window.pageReady = true;
