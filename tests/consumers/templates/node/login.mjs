// TIM in Node itself: logs in to timd with Node's global WebSocket (Node >= 22; 20 and 21 with
// --experimental-websocket), logs out, destroys, and then the process must end by itself (no
// socket, timer or listener left). `node login.mjs URL SDKAPPID USER USERSIG [--no-websocket]`
// prints one JSON line of what happened. With --no-websocket it removes the global WebSocket
// first, as an older Node has none.
import TIM from 'tim-wasm';

const [url, sdkappid, userID, userSig, flag] = process.argv.slice(2);
if (flag === '--no-websocket') delete globalThis.WebSocket;
const tim = TIM.create({ SDKAppID: Number(sdkappid), serverURL: url });
tim.setLogLevel(4);
const events = [];
for (const name of Object.values(TIM.EVENT)) tim.on(name, (e) => events.push(e.data && e.data.state ? `${e.name}:${e.data.state}` : e.name));
const out = { node: process.version, websocket: typeof globalThis.WebSocket };
const ready = new Promise((r) => tim.once(TIM.EVENT.SDK_READY, r));
try {
  out.login = (await tim.login({ userID, userSig })).data;
  await ready;
  out.user = tim.getLoginUser();
  out.ready = tim.isReady();
  out.logout = (await tim.logout()).code;
} catch (e) {
  out.error = { code: e.code, message: e.message };
}
await tim.destroy();
out.events = events;
console.log(JSON.stringify(out));
