// Server-side rendering and Node itself, with the packed tarball installed as users install it:
//
// - Node (templates/node): importing the package, TIM.create, on/once/off, getLoginStatus,
//   isReady, getLoginUser, setLogLevel and destroy read no page global (window, document,
//   location, sessionStorage, localStorage, navigator, self); a login does. TIM logs in to a
//   real timd from Node with its global WebSocket (Node >= 22; 20 and 21 with
//   --experimental-websocket), and the process then ends by itself; without a WebSocket the
//   login rejects with 2800 saying so.
// - Vite SSR + Preact (templates/ssr): a production SSR server renders the page in Node with
//   the SDK imported and created at module scope (reading no page global), then Chromium,
//   Firefox and WebKit hydrate that HTML (the same DOM nodes), with no sessionStorage or Web
//   Locks call before the page's login, and log in to timd.
//
// Needs pkg/ built and target/debug/timd (scripts/consumers.sh does both). CONSUMER_BROWSERS
// narrows the engines; TIM_WASM_TARBALL tests a given tarball.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launch, waitFor, freePort } from '../e2e/webdriver.mjs';
import { startTimd, official, uniqueUser, root, SDKAPPID } from '../e2e/timd.mjs';
import { packPackage } from '../../scripts/check-package.mjs';
import { createProject, mustRun, startServer, tail } from './projects.mjs';

const BROWSERS = (process.env.CONSUMER_BROWSERS || 'chrome,firefox,webkit').split(',');
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
// Node's global WebSocket: unflagged from 22, behind --experimental-websocket in 20 and 21.
const WEBSOCKET_FLAGS = NODE_MAJOR >= 22 ? [] : ['--experimental-websocket'];

let work;
let tarball;
let timd; // demo mode: the SSR page (a loopback origin) may connect
let plainTimd; // as in production, no --allowed-origins: Node's WebSocket sends no Origin
const cleanups = [];
const memo = new Map();
const once = (key, fn) => { if (!memo.has(key)) memo.set(key, fn()); return memo.get(key); };

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'tim-ssr-'));
  mkdirSync(path.join(work, 'pack'));
  tarball = process.env.TIM_WASM_TARBALL
    ? path.resolve(process.env.TIM_WASM_TARBALL)
    : packPackage(path.join(root, 'pkg'), path.join(work, 'pack')).tarball;
  timd = await startTimd();
  plainTimd = await startTimd([], { demo: false });
});

after(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
  await timd?.stop();
  await plainTimd?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs `node ARGS` in `cwd`; resolves to { code, stdout, stderr, ms } once the process has ended by itself. */
function node(args, cwd, { timeoutMs = 30000 } = {}) {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.killed ? 'killed (did not end by itself)' : err.code) : 0, stdout, stderr, ms: Date.now() - started });
    });
  });
}

const nodeProject = () => once('node', () => createProject('node', path.join(work, 'node'), tarball));

test('Node: importing tim-wasm and every call but login read no page global; a login does', { timeout: 300000 }, async () => {
  const dir = await nodeProject();
  const r = await node(['ssr-safe.mjs'], dir);
  assert.equal(r.code, 0, `ssr-safe.mjs: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.deepEqual(out.beforeLogin, [], 'import, TIM.create, on/once/off, getters, setLogLevel read no page global');
  assert.deepEqual(out.state, { status: 3, ready: false, user: '', version: out.state.version, same: true });
  // The guard does record: the login reads the page's origin, online state and instance id.
  for (const name of ['location', 'navigator', 'sessionStorage']) {
    assert.ok(out.afterLogin.includes(name), `a login reads ${name}: ${JSON.stringify(out.afterLogin)}`);
  }
  assert.equal(out.login, 2800, 'nothing listens on port 9');
});

test(`Node ${process.version}: TIM logs in to timd with Node's global WebSocket${WEBSOCKET_FLAGS.length ? ` (${WEBSOCKET_FLAGS.join(' ')})` : ''}, and the process then ends by itself`, { timeout: 300000 }, async (t) => {
  const dir = await nodeProject();
  const user = uniqueUser('node');
  const r = await node([...WEBSOCKET_FLAGS, 'login.mjs', `ws://127.0.0.1:${plainTimd.port}`, String(SDKAPPID), user, official.genSig(user, 600)], dir);
  assert.equal(r.code, 0, `login.mjs exit (${r.ms} ms): ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.equal(out.error, undefined, JSON.stringify(out));
  assert.deepEqual(out.login, { actionStatus: 'OK', errorCode: 0, errorInfo: '' });
  assert.equal(out.user, user);
  assert.equal(out.ready, true);
  assert.equal(out.logout, 0);
  assert.deepEqual(out.events, ['netStateChange:connecting', 'netStateChange:connected', 'sdkStateReady', 'sdkStateNotReady', 'sdkDestroy']);
  t.diagnostic(`node ${out.node}: login, logout, destroy and exit in ${r.ms} ms`);
});

test('Node without a WebSocket: login rejects with 2800 saying which Node has one', { timeout: 300000 }, async () => {
  const dir = await nodeProject();
  const r = await node(['login.mjs', `ws://127.0.0.1:${plainTimd.port}`, String(SDKAPPID), 'nows', 'sig', '--no-websocket'], dir);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.equal(out.error && out.error.code, 2800, JSON.stringify(out));
  assert.match(out.error.message, /no WebSocket.*Node\.js.*22.*--experimental-websocket/);
});

/** The SSR project, built, and its production server running. */
function ssrServer() {
  return once('ssr', async () => {
    const config = `export const SDKAppID = ${SDKAPPID};\nexport const serverURL = 'ws://127.0.0.1:${timd.port}';\n`;
    const dir = await createProject('ssr', path.join(work, 'ssr'), tarball, { files: { 'src/config.js': config } });
    await mustRun('vite build (client) and vite build --ssr (server)', 'npm', ['run', '--silent', 'build'], { cwd: dir });
    const origin = `http://127.0.0.1:${await freePort()}`;
    const srv = await startServer('the SSR server', process.execPath, ['server.mjs', new URL(origin).port], { cwd: dir, origin });
    cleanups.push(srv.stop);
    return { origin, srv };
  });
}

test('Vite SSR: the server renders the page in Node with the SDK created at module scope, reading no page global', { timeout: 300000 }, async () => {
  const { origin, srv } = await ssrServer();
  const html = await (await fetch(`${origin}/`)).text();
  const { version } = JSON.parse(readFileSync(path.join(root, 'pkg/package.json'), 'utf8'));
  assert.ok(html.includes(`<h1>tim-wasm ${version}</h1>`), `the server rendered the app:\n${tail(html, 20)}`);
  assert.ok(html.includes('<p id="status">login status 3</p>'), `with the SDK's state (logged out):\n${tail(html, 20)}`);
  const touched = await (await fetch(`${origin}/__touched`)).json();
  assert.deepEqual(touched, [], `page globals the server side read: ${JSON.stringify(touched)}; server output:\n${tail(srv.output())}`);
});

for (const browserName of BROWSERS) {
  test(`Vite SSR in ${browserName}: the page hydrates (same DOM), reads no sessionStorage or Web Locks before its login, then logs in`, { timeout: 300000 }, async () => {
    const { origin, srv } = await ssrServer();
    const b = await once(`browser:${browserName}`, async () => {
      const s = await launch(browserName);
      cleanups.push(() => s.quit());
      return s;
    });
    const user = uniqueUser('ssr');
    await b.navigate(`${origin}/?${new URLSearchParams({ user, sig: official.genSig(user, 600) })}`);
    const state = await waitFor(() => b.run(() => (window.pageReady && window.hydrated ? 'ready'
      : window.pageErrors && window.pageErrors.length ? 'errors' : false)), { what: 'the hydrated page', timeoutMs: 30000 })
      .catch(() => 'timeout');
    if (state !== 'ready') {
      assert.fail(`the page did not hydrate (${state}): ${JSON.stringify(await b.run(() => window.pageErrors).catch((e) => e.message))}; server:\n${tail(srv.output())}`);
    }
    assert.equal(await b.run(() => window.serverText), 'login status 3', 'the HTML came rendered from the server');
    assert.equal(await b.run(() => window.sameNode), true, 'hydrated: the server\'s DOM nodes were kept');
    assert.deepEqual(await b.run(() => window.touchedBeforeLogin), [], 'no sessionStorage / Web Locks call before the login');
    const r = await b.run(() => login());
    assert.deepEqual(r, { data: { actionStatus: 'OK', errorCode: 0, errorInfo: '' } }, JSON.stringify(r));
    await waitFor(async () => (await b.run(() => document.getElementById('status').textContent)) === `ready as ${user}`,
      { what: 'the hydrated component showing SDK_READY' });
    const touched = await b.run(() => window.touched);
    assert.ok(touched.includes('Storage.getItem'), `the login reads the tab's instance id: ${JSON.stringify(touched)}`);
    if (await b.run(() => !!window.LockManager)) assert.ok(touched.includes('LockManager.request'), `and locks it: ${JSON.stringify(touched)}`);
    assert.deepEqual(await b.run(() => events), ['netStateChange', 'netStateChange', 'sdkStateReady']);
    await b.run(() => tim.destroy());
  });
}
