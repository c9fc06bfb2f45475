// tim-wasm's npm entry point. scripts/build-pkg.sh bundles it, the wasm-bindgen glue and the
// wasm itself into ONE self-contained module (pkg/index.js): a page that imports the package
// fetches one file, one round trip after the HTML, and needs no bundler support for .wasm
// files or top-level await. The wasm travels inside as base64 of its raw DEFLATE stream
// (within 1% of its gzipped size on the wire) and is inflated and compiled synchronously at
// import, so `TIM.create` works as soon as the import resolves, as with tim-js-sdk.
import inflate from 'tiny-inflate';
import { initSync, TIM, timConstants } from './tim_wasm.js';
import { WASM_DEFLATE_BASE64, WASM_BYTES } from './tim_wasm_bg.inline.js';

const packed = atob(WASM_DEFLATE_BASE64);
const deflated = new Uint8Array(packed.length);
for (let i = 0; i < packed.length; i++) deflated[i] = packed.charCodeAt(i);
initSync({ module: inflate(deflated, new Uint8Array(WASM_BYTES)) });

const { EVENT, TYPES, ERROR_CODE } = timConstants();
Object.defineProperties(TIM, {
  EVENT: { value: EVENT, enumerable: true },
  TYPES: { value: TYPES, enumerable: true },
  // The SDK-side error codes by name (tim-wasm's addition; tim-js-sdk has no such table).
  ERROR_CODE: { value: ERROR_CODE, enumerable: true },
  // The package's version (Cargo.toml's), put in by scripts/bundle-pkg.mjs.
  VERSION: { value: __TIM_VERSION__, enumerable: true },
});

export { TIM };
export default TIM;
