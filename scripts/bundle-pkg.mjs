// Second half of scripts/build-pkg.sh: turns wasm-pack's output in STAGE (glue, snippets,
// optimised wasm) into the npm package in OUT: index.js (entry + glue + snippets + wasm in one
// ES module, minified), tim-wasm.js (the same as one classic script defining the global TIM,
// for <script src>), index.d.ts, package.json, README.md and LICENSE.
//   node scripts/bundle-pkg.mjs STAGE OUT
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [stage, out] = process.argv.slice(2).map((p) => path.resolve(p));
const toolsRequire = createRequire(path.join(root, 'tools/package.json'));
const { build } = toolsRequire('esbuild');

// The wasm as a module of two constants (raw DEFLATE, base64).
const wasm = readFileSync(path.join(stage, 'tim_wasm_bg.wasm'));
const deflated = deflateRawSync(wasm, { level: 9 });
writeFileSync(path.join(stage, 'tim_wasm_bg.inline.js'),
  `export const WASM_BYTES = ${wasm.length};\n` +
  `export const WASM_DEFLATE_BASE64 = ${JSON.stringify(deflated.toString('base64'))};\n`);
copyFileSync(path.join(root, 'js/index.js'), path.join(stage, 'index.js'));
copyFileSync(path.join(root, 'js/global.js'), path.join(stage, 'global.js'));
const cargo = readFileSync(path.join(root, 'Cargo.toml'), 'utf8');
const field = (name) => new RegExp(`^${name} = "([^"]+)"`, 'm').exec(cargo)[1];

// The script-tag build's file name: also package.json's `unpkg` and `jsdelivr`.
const SCRIPT = 'tim-wasm.js';
// The ES module (index.js) and the classic script (tim-wasm.js): the same code and wasm.
for (const [entry, file, format] of [['index.js', 'index.js', 'esm'], ['global.js', SCRIPT, 'iife']]) {
  await build({
    entryPoints: [path.join(stage, entry)],
    outfile: path.join(out, file),
    bundle: true,
    format,
    platform: 'browser',
    // What the wasm itself needs (reference types, bulk memory) arrived with these.
    target: ['chrome96', 'firefox79', 'safari15'],
    minify: true,
    legalComments: 'none',
    alias: { 'tiny-inflate': toolsRequire.resolve('tiny-inflate') },
    define: { __TIM_VERSION__: JSON.stringify(field('version')) },
    logLevel: 'warning',
  });

  // Anything the bundle still loads by URL would be a file the package lacks.
  const bundled = readFileSync(path.join(out, file), 'utf8');
  for (const leftover of [/import\.meta/, /["'`][^"'`]*\.wasm["'`]/, /snippets\//]) {
    const found = leftover.exec(bundled);
    if (found) {
      console.error(`bundle-pkg: ${file} still refers to ${found[0]}: it must be self-contained`);
      process.exit(1);
    }
  }
}

copyFileSync(path.join(root, 'js/index.d.ts'), path.join(out, 'index.d.ts'));
copyFileSync(path.join(root, 'js/README.md'), path.join(out, 'README.md'));
copyFileSync(path.join(root, 'LICENSE'), path.join(out, 'LICENSE'));

const pkg = {
  name: 'tim-wasm',
  version: field('version'),
  description: 'Instant-messaging login SDK for the web: Rust + WebAssembly, tim-js-sdk compatible login API',
  keywords: ['im', 'chat', 'login', 'tim', 'tencent-cloud-chat', 'websocket', 'wasm'],
  license: field('license'),
  repository: { type: 'git', url: `git+${field('repository')}.git` },
  type: 'module',
  main: './index.js',
  module: './index.js',
  types: './index.d.ts',
  exports: {
    '.': { types: './index.d.ts', default: './index.js' },
    [`./${SCRIPT}`]: `./${SCRIPT}`,
    './package.json': './package.json',
  },
  // The script-tag build, as CDNs serve a package by its bare name
  // (https://unpkg.com/tim-wasm, https://cdn.jsdelivr.net/npm/tim-wasm).
  unpkg: `./${SCRIPT}`,
  jsdelivr: `./${SCRIPT}`,
  files: ['index.js', 'index.d.ts', SCRIPT],
  // Importing the module compiles its wasm and nothing else: unused, it may be dropped. The
  // script-tag build defines the global TIM: that is its effect.
  sideEffects: [`./${SCRIPT}`],
  // The browsers whose WebAssembly (reference types, bulk memory) and JS the package needs.
  browserslist: ['chrome >= 96', 'edge >= 96', 'firefox >= 79', 'safari >= 15', 'ios_saf >= 15'],
};
writeFileSync(path.join(out, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
