// tim-wasm's npm entry point: loads the wasm once (top-level await), then exports `TIM` as the
// default export, with `TIM.EVENT` and `TIM.TYPES`, so `import TIM from 'tim-wasm'` is all a
// page needs (as with tim-js-sdk).
import init, { TIM, timConstants } from './tim_wasm.js';

await init();
const { EVENT, TYPES } = timConstants();
Object.defineProperties(TIM, {
  EVENT: { value: EVENT, enumerable: true },
  TYPES: { value: TYPES, enumerable: true },
});

export { TIM };
export default TIM;
