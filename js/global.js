// tim-wasm's script-tag build (tim-wasm.js in the package, its `unpkg` / `jsdelivr` file): the
// same SDK as index.js, wasm inside, as one classic script that defines the global `TIM`, as
// tim-js-sdk's tim-js.js does, for pages that load it with <script src> and no bundler or
// modules. scripts/bundle-pkg.mjs bundles it as an IIFE; the ES module is built apart from it.
import TIM from './index.js';

globalThis.TIM = TIM;
