#!/usr/bin/env node
// Checks the npm package as npm delivers it: the packed tarball, not pkg/. Every relative file
// that a shipped module refers to (static import/export, dynamic import(), new URL(..., import.meta.url),
// relative imports of the .d.ts files) must be inside the tarball, every bare import must be a
// declared dependency, and package.json must be publish-ready (name, version equal to
// Cargo.toml's, license, repository, exports, types, files, sideEffects), with its entry points
// shipped.
//
//   node scripts/check-package.mjs [PKG_DIR | TARBALL]    (default: pkg/; a directory is packed first)
//
// Exit 0 when the tarball is complete, 1 with one line per problem otherwise.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// acorn is pinned in tools/ (scripts/setup.sh installs it).
const acorn = createRequire(path.join(root, 'tools/package.json'))('acorn');

/** The version in the repository's Cargo.toml (the package's version must equal it). */
export function cargoVersion(dir = root) {
  return /^version = "([^"]+)"/m.exec(readFileSync(path.join(dir, 'Cargo.toml'), 'utf8'))[1];
}

/** `npm pack` of `pkgDir` into `destDir`; returns { tarball, files } as npm reports them. */
export function packPackage(pkgDir, destDir) {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', destDir],
    { cwd: pkgDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [info] = JSON.parse(out);
  return { tarball: path.join(destDir, info.filename), files: info.files.map((f) => f.path) };
}

/** Values of an `exports` entry for every condition, flattened (strings only). */
function exportTargets(value, out = []) {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => exportTargets(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => exportTargets(v, out));
  return out;
}

/** The file a browser-side bundler or import map uses for `import 'name'` (exports '.'). */
export function resolveEntry(pkg, conditions = ['browser', 'import', 'default']) {
  const pick = (v) => {
    if (typeof v === 'string') return v;
    if (Array.isArray(v)) { for (const x of v) { const r = pick(x); if (r) return r; } return undefined; }
    if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) if (conditions.includes(k)) { const r = pick(x); if (r) return r; }
    }
    return undefined;
  };
  const exp = pkg.exports;
  const dot = typeof exp === 'string' || Array.isArray(exp) || (exp && !Object.keys(exp).some((k) => k.startsWith('.')))
    ? exp : exp?.['.'];
  const target = dot !== undefined ? pick(dot) : (pkg.module || pkg.main);
  return target && path.posix.normalize(target);
}

function isImportMetaUrl(n) {
  return n?.type === 'MemberExpression' && n.object.type === 'MetaProperty'
    && n.object.meta.name === 'import' && n.object.property.name === 'meta'
    && !n.computed && n.property.name === 'url';
}

function literal(n) {
  if (n?.type === 'Literal' && typeof n.value === 'string') return n.value;
  if (n?.type === 'TemplateLiteral' && n.expressions.length === 0) return n.quasis[0].value.cooked;
  return undefined;
}

/** Every file reference in one JS module: { kind, spec (undefined when not a literal), line }. */
export function moduleReferences(source) {
  const refs = [];
  const ast = acorn.parse(source, { ecmaVersion: 'latest', sourceType: 'module', locations: true });
  const visit = (n) => {
    if (!n || typeof n.type !== 'string') return;
    const line = n.loc.start.line;
    switch (n.type) {
      case 'ImportDeclaration': refs.push({ kind: 'static import', spec: literal(n.source), line }); break;
      case 'ExportAllDeclaration':
      case 'ExportNamedDeclaration':
        if (n.source) refs.push({ kind: 'export from', spec: literal(n.source), line });
        break;
      case 'ImportExpression': refs.push({ kind: 'dynamic import()', spec: literal(n.source), line }); break;
      case 'NewExpression':
        if (n.callee.type === 'Identifier' && n.callee.name === 'URL' && isImportMetaUrl(n.arguments[1])) {
          refs.push({ kind: 'new URL(…, import.meta.url)', spec: literal(n.arguments[0]), line, url: true });
        }
        break;
      default:
    }
    for (const [key, v] of Object.entries(n)) {
      if (key === 'loc') continue;
      if (Array.isArray(v)) v.forEach(visit);
      else if (v && typeof v === 'object') visit(v);
    }
  };
  visit(ast);
  return refs;
}

/** Relative references in a .d.ts file (import/export from, import("…"), reference path). */
function declarationReferences(source) {
  const refs = [];
  const patterns = [/\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /^\s*import\s*['"]([^'"]+)['"]/gm, /\/\/\/\s*<reference\s+path\s*=\s*['"]([^'"]+)['"]/g];
  for (const re of patterns) for (const m of source.matchAll(re)) {
    refs.push({ spec: m[1], line: source.slice(0, m.index).split('\n').length });
  }
  return refs;
}

const isRelative = (s) => s.startsWith('./') || s.startsWith('../') || s === '.' || s === '..';
const bareName = (s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]);

/**
 * Checks a packed tarball. Returns { problems: string[], files: string[], pkg } — no problems
 * means every file the package refers to ships and package.json is publish-ready.
 */
export function checkTarball(tarball, { expectedVersion, expectedName = 'tim-wasm' } = {}) {
  const problems = [];
  const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n')
    .filter((f) => f && !f.endsWith('/')).map((f) => f.replace(/^[^/]+\//, ''));
  const shipped = new Set(files);
  const dir = mkdtempSync(path.join(tmpdir(), 'tim-check-'));
  try {
    execFileSync('tar', ['-xzf', tarball, '-C', dir]);
    const base = path.join(dir, 'package');
    const read = (f) => readFileSync(path.join(base, f), 'utf8');
    if (!shipped.has('package.json')) return { problems: ['package.json is not in the tarball'], files };
    const pkg = JSON.parse(read('package.json'));

    // package.json: publish-ready fields.
    const need = (cond, msg) => { if (!cond) problems.push(`package.json: ${msg}`); };
    need(pkg.name === expectedName, `"name" is ${JSON.stringify(pkg.name)}, expected "${expectedName}"`);
    need(typeof pkg.version === 'string' && pkg.version, '"version" is missing');
    if (expectedVersion) need(pkg.version === expectedVersion, `"version" ${JSON.stringify(pkg.version)} differs from Cargo.toml's "${expectedVersion}"`);
    need(typeof pkg.license === 'string' && pkg.license, '"license" is missing');
    need((typeof pkg.repository === 'string' && pkg.repository) || (pkg.repository && pkg.repository.url),
      '"repository" is missing (a string or { type, url })');
    need(pkg.exports !== undefined, '"exports" is missing');
    need(typeof (pkg.types ?? pkg.typings) === 'string', '"types" is missing');
    need(Array.isArray(pkg.files) && pkg.files.length > 0, '"files" is missing');
    need(typeof pkg.sideEffects === 'boolean' || Array.isArray(pkg.sideEffects), '"sideEffects" is missing (false or a list of files)');

    // Entry points named by package.json must ship.
    const entryFiles = [
      ...exportTargets(pkg.exports).map((t) => ['exports', t]),
      ...['main', 'module', 'types', 'typings'].filter((k) => typeof pkg[k] === 'string').map((k) => [k, pkg[k]]),
      ...(typeof pkg.browser === 'string' ? [['browser', pkg.browser]] : []),
      ...['unpkg', 'jsdelivr'].filter((k) => typeof pkg[k] === 'string').map((k) => [k, pkg[k]]),
    ];
    for (const [field, target] of entryFiles) {
      const f = path.posix.normalize(target);
      if (!shipped.has(f)) problems.push(`package.json "${field}" names ${target}, which is not in the tarball`);
    }
    if (pkg.exports !== undefined && !resolveEntry(pkg)) problems.push('package.json "exports" has no "." entry for browser/import/default');
    // What CDNs serve for the bare package name is loaded with <script src>: a classic script.
    for (const field of ['unpkg', 'jsdelivr']) {
      const f = typeof pkg[field] === 'string' && path.posix.normalize(pkg[field]);
      if (!f || !shipped.has(f)) continue;
      try { acorn.parse(read(f), { ecmaVersion: 'latest', sourceType: 'script' }); } catch (e) {
        problems.push(`package.json "${field}" names ${pkg[field]}, which is not a classic script for <script src> (${e.message})`);
      }
    }

    // Every module's file references.
    const deps = new Set([...Object.keys(pkg.dependencies || {}), ...Object.keys(pkg.peerDependencies || {}), pkg.name]);
    for (const file of files.filter((f) => /\.(m?js|cjs)$/.test(f))) {
      let refs;
      try { refs = moduleReferences(read(file)); } catch (e) {
        problems.push(`${file}: cannot be parsed as an ES module (${e.message})`);
        continue;
      }
      for (const { kind, spec, line, url } of refs) {
        const at = `${file}:${line}`;
        if (spec === undefined) { problems.push(`${at}: ${kind} with a computed argument: cannot check what it loads`); continue; }
        if (url ? /^[a-z][a-z0-9+.-]*:/i.test(spec) || spec.startsWith('/') : !isRelative(spec) && !spec.startsWith('/')) {
          if (!url && !spec.startsWith('node:') && !deps.has(bareName(spec))) {
            problems.push(`${at}: ${kind} of '${spec}', which is not in "dependencies" or "peerDependencies"`);
          }
          continue;
        }
        if (spec.startsWith('/')) { problems.push(`${at}: ${kind} of the absolute path '${spec}'`); continue; }
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec.split(/[?#]/)[0]));
        if (target.startsWith('..')) problems.push(`${at}: ${kind} of '${spec}' points outside the package`);
        else if (!shipped.has(target)) problems.push(`${at}: ${kind} of '${spec}' — ${target} is not in the tarball (package.json "files")`);
      }
    }
    for (const file of files.filter((f) => f.endsWith('.d.ts'))) {
      for (const { spec, line } of declarationReferences(read(file))) {
        if (!isRelative(spec)) continue;
        const p = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
        const candidates = p.endsWith('.d.ts') ? [p]
          : /\.m?js$/.test(p) ? [p.replace(/\.(m?)js$/, '.d.$1ts')] : [`${p}.d.ts`, `${p}/index.d.ts`];
        if (!candidates.some((c) => shipped.has(c))) {
          problems.push(`${file}:${line}: imports '${spec}' — ${candidates[0]} is not in the tarball (package.json "files")`);
        }
      }
    }
    return { problems, files, pkg };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = path.resolve(process.argv[2] || path.join(root, 'pkg'));
  let tarball = arg;
  let packDir;
  if (statSync(arg).isDirectory()) {
    packDir = mkdtempSync(path.join(tmpdir(), 'tim-pack-'));
    tarball = packPackage(arg, packDir).tarball;
  }
  try {
    const { problems, files } = checkTarball(tarball, { expectedVersion: cargoVersion() });
    if (problems.length) {
      console.error(`${path.basename(tarball)}: ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
      process.exitCode = 1;
    } else {
      console.error(`${path.basename(tarball)}: OK (${files.length} files: ${files.join(', ')})`);
    }
  } finally {
    if (packDir) rmSync(packDir, { recursive: true, force: true });
  }
}
