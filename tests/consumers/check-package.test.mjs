// The package check (scripts/check-package.mjs) can fail: packages whose tarball leaves out a
// file that one of its modules loads — by static import, export-from, dynamic import(),
// new URL(…, import.meta.url), or a .d.ts import — are rejected with a message naming the file,
// and so are incomplete package.json files; the same package with everything shipped passes.
// Finally the real package (pkg/) with one of its referenced files dropped from "files" fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkTarball, packPackage, moduleReferences, resolveEntry } from '../../scripts/check-package.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let work;
let n = 0;
before(() => { work = mkdtempSync(path.join(tmpdir(), 'tim-check-test-')); });
after(() => rmSync(work, { recursive: true, force: true }));

// A small package using every kind of reference the check follows.
const FILES = {
  'index.js': "import init from './glue.js';\nexport * from './reexport.js';\nawait init();\nexport default {};\n",
  'glue.js': "import { helper } from './snippets/x/inline0.js';\n"
    + "export default async function init() { helper(); return fetch(new URL('glue_bg.wasm', import.meta.url)); }\n"
    + "export const later = () => import('./lazy.js');\n",
  'reexport.js': 'export const A = 1;\n',
  'snippets/x/inline0.js': 'export function helper() {}\n',
  'lazy.js': 'export const B = 2;\n',
  'glue_bg.wasm': '\0asm',
  'index.d.ts': "export * from './glue';\ndeclare const TIM: {};\nexport default TIM;\n",
  'glue.d.ts': 'export declare const later: () => Promise<unknown>;\n',
};
const PKG = {
  name: 'tim-wasm', version: '1.2.3', license: 'MIT', repository: 'https://example.invalid/tim-wasm',
  type: 'module', types: 'index.d.ts', exports: { '.': { types: './index.d.ts', default: './index.js' } },
  files: Object.keys(FILES), sideEffects: ['./index.js'],
};

/** Writes the fixture (all files on disk), with package.json changed by `edit`; packs and checks it. */
function check(edit = (p) => p, extraFiles = {}) {
  const dir = path.join(work, `fixture${++n}`);
  for (const [f, body] of Object.entries({ ...FILES, ...extraFiles })) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), body);
  }
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify(edit(structuredClone(PKG))));
  mkdirSync(path.join(dir, 'out'));
  const { tarball } = packPackage(dir, path.join(dir, 'out'));
  return { ...checkTarball(tarball, { expectedVersion: '1.2.3' }), tarball };
}

const without = (file) => (p) => ({ ...p, files: p.files.filter((f) => f !== file) });

test('a complete package passes', () => {
  const { problems, files } = check();
  assert.deepEqual(problems, [], 'the complete fixture must have no problems');
  assert.ok(files.includes('snippets/x/inline0.js'), 'the fixture tarball must hold the snippet');
});

for (const [file, kind] of [
  ['snippets/x/inline0.js', 'static import'],
  ['reexport.js', 'export from'],
  ['lazy.js', 'dynamic import()'],
  ['glue_bg.wasm', 'new URL(…, import.meta.url)'],
  ['glue.d.ts', 'import'],
  ['index.js', 'exports'],
]) {
  test(`a tarball without ${file} (${kind}) fails, naming it`, () => {
    const { problems } = check(without(file));
    assert.ok(problems.some((p) => p.includes(file) && p.includes(kind)),
      `expected a problem naming ${file} (${kind}); got ${JSON.stringify(problems)}`);
  });
}

test('the snippet failure as wasm-bindgen writes it (minified, "files" leaving out snippets/) fails', () => {
  const glue = 'import{helper as e}from"./snippets/x/inline0.js";export default async function t(){e();return fetch(new URL("glue_bg.wasm",import.meta.url))}export const later=()=>import("./lazy.js");';
  const { problems } = check(without('snippets/x/inline0.js'), { 'glue.js': glue });
  assert.deepEqual(problems, [
    'glue.js:1: static import of \'./snippets/x/inline0.js\' — snippets/x/inline0.js is not in the tarball (package.json "files")',
  ]);
});

test('an import of an undeclared package or an unanalysable import() fails', () => {
  const { problems } = check((p) => ({ ...p, files: [...p.files, 'extra.js'] }),
    { 'extra.js': "import 'left-pad';\nconst name = 'x';\nexport const y = () => import(name);\n" });
  assert.ok(problems.some((p) => p.includes("'left-pad'") && p.includes('dependencies')), JSON.stringify(problems));
  assert.ok(problems.some((p) => p.startsWith('extra.js:3') && p.includes('computed')), JSON.stringify(problems));
  const declared = check((p) => ({ ...p, files: [...p.files, 'extra.js'], dependencies: { 'left-pad': '1.3.0' } }),
    { 'extra.js': "import 'left-pad';\n" });
  assert.deepEqual(declared.problems, [], 'a declared dependency is fine');
});

test('package.json must be publish-ready', () => {
  // One tarball with every field wrong or missing: each must be reported on its own.
  const { problems } = check((p) => ({ ...p, name: 'other', version: '9.9.9', license: undefined, repository: undefined,
    exports: undefined, main: 'index.js', types: undefined, files: undefined, sideEffects: undefined }));
  for (const expect of [/"name" is "other"/, /"version" "9.9.9" differs from Cargo.toml's "1.2.3"/, /"license" is missing/,
    /"repository" is missing/, /"exports" is missing/, /"types" is missing/, /"files" is missing/, /"sideEffects" is missing/]) {
    assert.ok(problems.some((p) => expect.test(p)), `the check must report ${expect}; got ${JSON.stringify(problems)}`);
  }
});

test('the script-tag file that "unpkg" and "jsdelivr" name must ship, as a classic script', () => {
  const script = { 'cdn.js': '(()=>{globalThis.TIM={};})();\n' };
  const withScript = (p) => ({ ...p, unpkg: './cdn.js', jsdelivr: './cdn.js', files: [...p.files, 'cdn.js'] });
  assert.deepEqual(check(withScript, script).problems, [], 'a shipped classic script is fine');
  const missing = check((p) => ({ ...withScript(p), files: p.files }), script).problems;
  for (const field of ['unpkg', 'jsdelivr']) {
    assert.ok(missing.some((x) => x.includes(`"${field}" names ./cdn.js, which is not in the tarball`)), JSON.stringify(missing));
  }
  // An ES module cannot be loaded with <script src>: `import`/`export` are syntax errors there.
  const module = check(withScript, { 'cdn.js': 'export default {};\n' }).problems;
  assert.ok(module.some((x) => x.includes('"unpkg" names ./cdn.js, which is not a classic script')), JSON.stringify(module));
});

test('the CLI exits 1 and lists the problem for a broken tarball, 0 for a good one', async () => {
  const cli = (tgz) => new Promise((resolve) => {
    execFile(process.execPath, [path.join(root, 'scripts/check-package.mjs'), tgz], (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr }));
  });
  const bad = await cli(check(without('lazy.js')).tarball);
  assert.equal(bad.code, 1, `exit code for a broken tarball; stderr: ${bad.stderr}`);
  assert.match(bad.stderr, /lazy\.js is not in the tarball/);
  // The CLI compares with the repository's Cargo.toml version.
  const version = /^version = "([^"]+)"/m.exec(readFileSync(path.join(root, 'Cargo.toml'), 'utf8'))[1];
  const good = await cli(check((p) => ({ ...p, version }), {}).tarball);
  assert.equal(good.code, 0, `exit code for a complete tarball; stderr: ${good.stderr}`);
});

test('the real package (pkg/) fails when any file it refers to is left out of "files"', (t) => {
  // The files of the real tarball that something refers to: its entry points and every file a
  // shipped module or declaration loads (those the check resolves as present).
  const packed = path.join(work, 'real');
  mkdirSync(packed);
  const { tarball, files } = packPackage(path.join(root, 'pkg'), packed);
  const pkg = JSON.parse(readFileSync(path.join(root, 'pkg/package.json'), 'utf8'));
  const referenced = new Set([resolveEntry(pkg), path.posix.normalize(pkg.types), path.posix.normalize(pkg.unpkg)]);
  for (const f of files.filter((x) => /\.m?js$/.test(x))) {
    for (const { spec } of moduleReferences(readFileSync(path.join(root, 'pkg', f), 'utf8'))) {
      const target = spec && path.posix.normalize(path.posix.join(path.posix.dirname(f), spec));
      if (target && files.includes(target)) referenced.add(target);
    }
  }
  assert.ok(referenced.size >= 3, `the entry, its declarations and the script-tag build at least: ${[...referenced]}`);
  const baseline = new Set(checkTarball(tarball).problems);
  const tried = [];
  for (const file of referenced) {
    const dir = path.join(work, `real-without-${file.replace(/\W/g, '_')}`);
    cpSync(path.join(root, 'pkg'), dir, { recursive: true });
    const p = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    p.files = files.filter((f) => f !== file && f !== 'package.json');
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify(p));
    mkdirSync(path.join(dir, '.out'));
    const out = packPackage(dir, path.join(dir, '.out'));
    if (out.files.includes(file)) continue; // npm always packs "main" whatever "files" says
    const broken = checkTarball(out.tarball).problems.filter((x) => !baseline.has(x));
    assert.ok(broken.some((x) => x.includes(file)), `pkg/ without ${file} must fail naming it; new problems: ${JSON.stringify(broken)}`);
    tried.push(file);
  }
  assert.ok(tried.length > 0, `no referenced file of pkg/ could be left out (referenced: ${[...referenced]})`);
  t.diagnostic(`pkg/ fails without each of: ${tried.join(', ')}`);
});
