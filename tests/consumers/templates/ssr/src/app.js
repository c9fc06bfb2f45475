// The app: one component, and the SDK instance created at module scope as apps do, so this runs
// on the server during rendering as well as in the browser. src/config.js (SDKAppID, serverURL)
// is written when the project is created.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import TIM from 'tim-wasm';
import { SDKAppID, serverURL } from './config.js';

export const tim = TIM.create({ SDKAppID, serverURL });

const describe = () => (tim.isReady() ? `ready as ${tim.getLoginUser()}` : `login status ${tim.getLoginStatus()}`);

export function App() {
  const [status, setStatus] = useState(describe());
  useEffect(() => {
    const update = () => setStatus(describe());
    tim.on(TIM.EVENT.SDK_READY, update);
    tim.on(TIM.EVENT.SDK_NOT_READY, update);
    window.hydrated = true;
    return () => {
      tim.off(TIM.EVENT.SDK_READY, update);
      tim.off(TIM.EVENT.SDK_NOT_READY, update);
    };
  }, []);
  return h('main', null,
    h('h1', null, `tim-wasm ${TIM.VERSION}`),
    h('p', { id: 'status' }, status));
}
