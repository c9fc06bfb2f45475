// The demo as `scripts/demo.sh` runs it: timd --demo with its embedded defaults (1 Web instance,
// "dual" policy) serving www/ and pkg/, driven like a person would in real Chromium, Firefox and WebKit:
// log in with just a name, see this tab in the user's instance list, open another tab (which
// kicks this one), log in a native Android device from the page, REST-kick the user from the
// page. Screenshots of the page go to $TEST_ARTIFACTS_DIR (default target/test-artifacts/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, freePort, waitFor, BROWSERS } from './webdriver.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const artifacts = path.resolve(root, process.env.TEST_ARTIFACTS_DIR || 'target/test-artifacts');
let timd;
let origin;
let dataDir;

before(async () => {
  assert.ok(existsSync(path.join(root, 'pkg/index.js')), 'pkg/index.js is missing: run scripts/build-pkg.sh first');
  const port = await freePort();
  dataDir = mkdtempSync(path.join(tmpdir(), 'tim-demo-'));
  origin = `http://127.0.0.1:${port}`;
  timd = spawn(path.join(root, 'target/debug/timd'),
    ['serve', '--demo', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir],
    { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } });
  await waitFor(async () => (await fetch(`${origin}/healthz`)).ok, { what: 'timd' });
  mkdirSync(artifacts, { recursive: true });
});

after(() => {
  timd?.kill();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// ---- page helpers ----------------------------------------------------------------------

/** A real (trusted) click through WebDriver, as a person's: popups are allowed. */
async function click(b, css) {
  const found = await b.cmd('POST', '/element', { using: 'css selector', value: css });
  await b.cmd('POST', `/element/${Object.values(found)[0]}/click`, {});
}
const text = (b, id) => b.run((i) => document.getElementById(i).textContent, id);
const stateIs = (b, want) => waitFor(async () => (await text(b, 'state')) === want, { what: `state "${want}"` });
/** The instance table's rows: { instance, platform, this, online } each. */
const rows = (b) => b.run(() => [...document.querySelectorAll('#instances tbody tr')].map((r) => ({ ...r.dataset })));
const rowsUntil = (b, what, pred) => waitFor(async () => { const r = await rows(b); return pred(r) && r; }, { what });
/** This tab's KICKED_OUT banner: its type, or null while hidden. */
const kickedType = (b) => b.run(() => { const k = document.getElementById('kicked'); return k.hidden ? null : k.dataset.type; });
const feedKicks = (b) => b.run(() => [...document.querySelectorAll('#feed li.kick')].map((li) => `${li.dataset.reason} ${li.textContent}`));
const log = (b) => text(b, 'log');
async function login(b, user) {
  await b.run((u) => { document.getElementById('user').value = u; document.getElementById('login').click(); }, user);
  await stateIs(b, `ready as ${user}`);
}
async function screenshot(b, name) {
  const file = path.join(artifacts, name);
  writeFileSync(file, await b.screenshot());
  console.log(`screenshot: ${file}`);
}

for (const browser of BROWSERS) {
  test(`demo page in ${browser}: instances live across tabs and devices, kicks as they happen`, { timeout: 120000 }, async () => {
    const b = await launch(browser);
    try {
      await b.cmd('POST', '/window/rect', { width: 1280, height: 1200 });
      await b.navigate(`${origin}/`);
      await waitFor(() => b.run(() => typeof window.tim === 'object'), { what: 'demo page' });
      const first = await b.handle();
      const user = `demo_${browser}_${process.pid}`;

      // The server's login settings, as `timd --demo` runs by default.
      assert.equal(await text(b, 'set-web'), '1');
      assert.equal(await text(b, 'set-policy'), 'dual');
      const settingsText = (await b.run(() => document.getElementById('settings').innerText)).replace(/\s+/g, ' ');
      assert.match(settingsText, /Web instances 1 /);
      assert.match(settingsText, /Multi-platform policy dual /);

      // Log in with just a name: this tab is in the user's instance list.
      await login(b, user);
      assert.match(await log(b), /event sdkStateReady/);
      assert.match(await log(b), /login ok \{"actionStatus":"OK","errorCode":0,"errorInfo":""\}/);
      let list = await rowsUntil(b, 'this tab listed', (r) => r.length === 1 && r[0].this === '1');
      assert.equal(list[0].platform, 'Web');
      assert.equal(list[0].online, '1');
      const firstInstance = list[0].instance;
      assert.equal(await text(b, 'watched'), user);

      // "Open another tab": it logs in as the same user; with 1 Web instance this tab is kicked.
      const clicked = Date.now();
      await click(b, '#open-tab');
      const second = await waitFor(async () => (await b.cmd('GET', '/window/handles')).find((h) => h !== first), { what: 'second tab' });
      await b.switchTo(second);
      await waitFor(() => b.run(() => typeof window.tim === 'object'), { what: 'second tab page' });
      await stateIs(b, `ready as ${user}`);
      list = await rowsUntil(b, 'second tab alone, as this tab', (r) => r.length === 1 && r[0].this === '1');
      assert.notEqual(list[0].instance, firstInstance);
      const secondInstance = list[0].instance;
      await b.switchTo(first);
      await waitFor(async () => (await kickedType(b)) === 'multipleAccount', { what: 'KICKED_OUT multipleAccount in the first tab' });
      assert.equal(await text(b, 'state'), 'not logged in');
      assert.match(await log(b), /event kickedOut \{"type":"multipleAccount"\}/);
      list = await rowsUntil(b, 'list shows the second tab only', (r) => r.length === 1 && r[0].instance === secondInstance);
      assert.equal(list[0].this, '', 'the second tab is not this tab');
      await waitFor(async () => (await feedKicks(b)).some((k) => k.startsWith('multipleAccount') && k.includes(`Web ${firstInstance.slice(0, 8)}`)),
        { what: 'the kick in the server feed' });
      console.log(`${browser}: open-tab click to first tab's list updated: ${Date.now() - clicked} ms`);

      // Close the second tab; log in again here (the closed tab's slot goes, no live tab is kicked).
      await b.switchTo(second);
      await b.cmd('DELETE', '/window');
      await b.switchTo(first);
      await login(b, user);
      assert.equal(await kickedType(b), null, 'the banner goes with a new login');
      await rowsUntil(b, 'this tab back alone', (r) => r.length === 1 && r[0].this === '1');

      // "Log in a native device": an Android device beside this tab ("dual" allows Web + one device).
      await b.run(() => { document.getElementById('device-platform').value = 'Android'; });
      await click(b, '#device-login');
      list = await rowsUntil(b, 'the Android device listed', (r) => r.length === 2 && r.some((x) => x.platform === 'Android'));
      const android = list.find((x) => x.platform === 'Android');
      assert.equal(android.this, '');
      assert.equal(list.find((x) => x.platform === 'Web').this, '1');
      await screenshot(b, `demo-page-${browser}-devices.png`);

      // "REST-kick": this tab gets KICKED_OUT REST_API_Kick, the device is kicked and disappears.
      const kickClicked = Date.now();
      await click(b, '#rest-kick');
      await waitFor(async () => (await kickedType(b)) === 'REST_API_Kick', { what: 'KICKED_OUT REST_API_Kick' });
      assert.match(await log(b), /event kickedOut \{"type":"REST_API_Kick"\}/);
      await rowsUntil(b, 'every instance gone', (r) => r.length === 0);
      console.log(`${browser}: REST-kick click to an empty instance list: ${Date.now() - kickClicked} ms`);
      await waitFor(() => b.run((u) => document.getElementById('feed').textContent.includes(`REST kick of ${u} as administrator: OK`), user),
        { what: 'the REST answer in the feed' });
      await waitFor(async () => (await feedKicks(b)).some((k) => k.startsWith('REST_API_Kick') && k.includes(`Android ${android.instance.slice(0, 8)}`)),
        { what: 'the device\'s kick in the feed' });
      const devices = await (await fetch(`${origin}/demo/devices`)).json();
      assert.deepEqual(devices.devices, [], 'the kicked device ended');
      await screenshot(b, `demo-page-${browser}-kicked.png`);

      // A device can be logged out from its row (a logout, not a kick).
      await login(b, user);
      await click(b, '#device-login');
      list = await rowsUntil(b, 'a device again', (r) => r.length === 2);
      const device = list.find((x) => x.this === '');
      await click(b, `#instances tr[data-instance="${device.instance}"] button`);
      await rowsUntil(b, 'device logged out', (r) => r.length === 1 && r[0].this === '1');
      await waitFor(() => b.run((id) => [...document.querySelectorAll('#feed li.logout')].some((li) => li.textContent.includes(id)), device.instance.slice(0, 8)),
        { what: 'the logout in the feed' });

      // Log out: "not logged in", the list empties.
      await b.run(() => document.getElementById('logout').click());
      await stateIs(b, 'not logged in');
      assert.match(await log(b), /event sdkStateNotReady/);
      await rowsUntil(b, 'logged out', (r) => r.length === 0);

      // A bad name is refused with the SDK's code, shown on the page.
      await b.run(() => { const i = document.getElementById('user'); i.removeAttribute('pattern'); i.value = 'no spaces'; document.getElementById('login').click(); });
      await waitFor(async () => /login error/.test(await log(b)), { what: 'error shown' });
      assert.match(await log(b), /login error 2002: userID must be/, 'the SDK\'s own code for a bad userID');
      await stateIs(b, 'not logged in');
    } catch (e) {
      // What the page showed, to tell why.
      const shown = await b.run(() => `state: ${document.getElementById('state').textContent}\nfeed:\n${document.getElementById('feed').innerText}\nlog:\n${document.getElementById('log').textContent}`).catch(() => '');
      console.log(`${browser} page at failure:\n${shown}`);
      throw e;
    } finally {
      await b.quit();
    }
  });
}
