#!/usr/bin/env bash
# Builds the npm package into pkg/: wasm-pack (release: opt-level z, LTO, panic=abort),
# then a recent wasm-opt -Oz, terser on the JS glue, then the entry point (js/index.js: default export TIM, wasm
# initialised by the package itself) and its TypeScript declarations.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

wasm-pack build --release --target web --out-dir pkg --out-name tim_wasm --no-pack . -- --no-default-features >&2
wasm-opt -Oz --strip-debug --strip-producers \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  pkg/tim_wasm_bg.wasm -o pkg/tim_wasm_bg.wasm
# Minify the JS glue as any bundler would (exports and the wasm import names are kept).
terser pkg/tim_wasm.js --module --compress passes=2 --mangle -o pkg/tim_wasm.js
cp js/index.js js/index.d.ts pkg/
rm -f pkg/.gitignore
node - <<'JS'
const fs = require('fs');
const cargo = fs.readFileSync('Cargo.toml', 'utf8');
const version = /^version = "([^"]+)"/m.exec(cargo)[1];
const pkg = {
  name: 'tim-wasm',
  version,
  description: 'Instant-messaging login SDK for the web: Rust + WebAssembly, tim-js-sdk compatible login API',
  license: 'MIT',
  type: 'module',
  main: 'index.js',
  module: 'index.js',
  types: 'index.d.ts',
  exports: { '.': { types: './index.d.ts', default: './index.js' } },
  files: ['index.js', 'index.d.ts', 'tim_wasm.js', 'tim_wasm.d.ts', 'tim_wasm_bg.wasm', 'tim_wasm_bg.wasm.d.ts'],
  sideEffects: ['./index.js'],
};
fs.writeFileSync('pkg/package.json', JSON.stringify(pkg, null, 2) + '\n');
JS
echo "pkg/ built" >&2
