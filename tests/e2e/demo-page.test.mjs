// The demo as `scripts/demo.sh` runs it: timd --demo with its embedded defaults serving www/ and
// pkg/. A person types a user name and logs in; a second tab with the same name logs in too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, freePort, waitFor } from './webdriver.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let timd;
let origin;
let dataDir;

before(async () => {
  const port = await freePort();
  dataDir = mkdtempSync(path.join(tmpdir(), 'tim-demo-'));
  origin = `http://127.0.0.1:${port}`;
  timd = spawn(path.join(root, 'target/debug/timd'),
    ['serve', '--demo', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir],
    { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } });
  await waitFor(async () => (await fetch(`${origin}/healthz`)).ok, { what: 'timd' });
});

after(() => {
  timd?.kill();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

for (const browser of ['chrome', 'firefox']) {
  test(`demo page in ${browser}: log in with a user name, see the events`, { timeout: 60000 }, async () => {
    const b = await launch(browser);
    try {
      await b.navigate(`${origin}/`);
      await waitFor(() => b.run(() => typeof window.tim === 'object'), { what: 'demo page' });
      const user = `demo_${browser}_${process.pid}`;
      await b.run((u) => { document.getElementById('user').value = u; document.getElementById('login').click(); }, user);
      await waitFor(() => b.run(() => document.getElementById('state').textContent.startsWith('ready as')), { what: 'ready' });
      assert.equal(await b.run(() => document.getElementById('state').textContent), `ready as ${user}`);
      const log = await b.run(() => document.getElementById('log').textContent);
      assert.match(log, /event sdkStateReady/);
      assert.match(log, /login ok \{"actionStatus":"OK","errorCode":0,"errorInfo":""\}/);

      await b.run(() => document.getElementById('logout').click());
      await waitFor(() => b.run(() => document.getElementById('state').textContent === 'not logged in'), { what: 'logged out' });
      assert.match(await b.run(() => document.getElementById('log').textContent), /event sdkStateNotReady/);

      // A bad name is refused with the SDK's code, shown on the page.
      await b.run(() => { const i = document.getElementById('user'); i.removeAttribute('pattern'); i.value = 'no spaces'; document.getElementById('login').click(); });
      await waitFor(() => b.run(() => /login error/.test(document.getElementById('log').textContent)), { what: 'error shown' });
    } finally {
      await b.quit();
    }
  });
}
