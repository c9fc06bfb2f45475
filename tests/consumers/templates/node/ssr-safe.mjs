// What server-side rendering does with the SDK, in Node: import it, TIM.create at module scope,
// read its state, add and remove handlers, destroy. Prints { beforeLogin, afterLogin }: the page
// globals read before any login (must be none) and by a login (which needs them: the page's
// origin, the browser's online state, the tab's instance id), which proves the guard records.
import { installGuard } from './guard.mjs';

const touched = installGuard();
const { default: TIM } = await import('tim-wasm');
const tim = TIM.create({ SDKAppID: 1400000000, serverURL: 'ws://127.0.0.1:9' });
const handler = () => {};
tim.on(TIM.EVENT.SDK_READY, handler);
tim.once(TIM.EVENT.KICKED_OUT, handler);
tim.off(TIM.EVENT.SDK_READY, handler);
const state = {
  status: tim.getLoginStatus(), ready: tim.isReady(), user: tim.getLoginUser(),
  version: TIM.VERSION, same: TIM.create({ SDKAppID: 1400000000 }) === tim,
};
tim.setLogLevel(4);
const beforeLogin = [...touched];
// Port 9 (discard) on loopback: refused at once; the login needs the page globals all the same.
const login = await tim.login({ userID: 'ssr', userSig: 'sig' }).then(() => 'resolved', (e) => e.code);
await tim.destroy();
console.log(JSON.stringify({ beforeLogin, afterLogin: [...new Set(touched.slice(beforeLogin.length))], state, login }));
