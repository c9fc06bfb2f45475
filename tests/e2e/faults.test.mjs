// Staying logged in through faults, in real Chromium, Firefox and WebKit: timd restarting (SIGTERM,
// and kill -9) under a logged-in page, and the Rust test proxy (tests/proxy) cutting, then
// black-holing the connection. The page must see only NET_STATE_CHANGE, never SDK_NOT_READY.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { startTimd, startProxy, official, uniqueUser, SDKAPPID } from './timd.mjs';

let timd; // restarted by the tests
let proxied; // behind the proxy, with a 1 s heartbeat so dead links show quickly
let proxy;

before(async () => {
  [timd, proxied] = await Promise.all([startTimd([]), startTimd(['--heartbeat-ms', '1000'])]);
  proxy = await startProxy(proxied.port);
});

after(async () => {
  proxy?.stop();
  await Promise.all([timd?.stop(), proxied?.stop()]);
});

async function loggedInTab(b, origin, server) {
  const user = uniqueUser('fault');
  const q = new URLSearchParams({ sdkappid: String(SDKAPPID), user, sig: official.genSig(user, 600) });
  if (server) q.set('server', server);
  await b.navigate(`${origin}/tab.html?${q}`);
  await waitFor(() => b.run(() => window.pageReady === true), { what: 'page' });
  assert.equal((await b.run(() => window.autoLogin)).actionStatus, 'OK');
  // SDK_READY follows the login's resolution (a task later): cleared only once it came.
  await waitFor(() => b.run(() => events.some((e) => e.name === 'sdkStateReady')), { what: 'SDK_READY' });
  await b.run(() => { events.length = 0; });
}

const names = (b) => b.run(() => events.map((e) => (e.detail ? `${e.name}:${e.detail}` : e.name)));

async function backConnected(b, what, timeoutMs = 30000) {
  await waitFor(async () => (await names(b)).includes('netStateChange:connected'), { what, timeoutMs });
  const seen = await names(b);
  assert.deepEqual(seen, ['netStateChange:connecting', 'netStateChange:connected'], `${what}: ${seen}`);
  assert.equal(await b.run(() => tim.isReady()), true);
  await b.run(() => { events.length = 0; });
}

for (const browser of BROWSERS) {
  test(`${browser}: timd restarts (SIGTERM, then kill -9) under a logged-in page`, { timeout: 120000 }, async (t) => {
    const b = await launch(browser);
    try {
      await loggedInTab(b, timd.origin);
      for (const crash of [false, true]) {
        const started = Date.now();
        await timd.restart({ crash });
        await backConnected(b, crash ? 'after kill -9' : 'after SIGTERM');
        t.diagnostic(`${browser}: back ${Date.now() - started} ms after ${crash ? 'kill -9' : 'SIGTERM'} (restart included)`);
      }
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: a cut, then a black hole, are detected and resumed`, { timeout: 120000 }, async (t) => {
    const b = await launch(browser);
    try {
      await proxy.pass();
      await loggedInTab(b, proxied.origin, proxy.url);
      await proxy.cut();
      await backConnected(b, 'after a cut');

      await proxy.blackhole();
      const silent = Date.now();
      // Timed by the page's own clock (the event's stamp), not by when a poll saw it.
      const at = await waitFor(() => b.run(() => events.find((e) => e.name === 'netStateChange' && e.detail === 'connecting')?.at), { what: 'dead link detected', timeoutMs: 10000 });
      const detected = Math.round(at - silent);
      t.diagnostic(`${browser}: black-holed link detected in ${detected} ms (heartbeat 1 s: bound 2 s + a ping interval)`);
      assert.ok(detected <= 4000, `detected in ${detected} ms`);
      await new Promise((r) => setTimeout(r, 3000)); // attempts while black-holed go nowhere
      await proxy.pass();
      const healed = Date.now();
      await backConnected(b, 'after the black hole', 40000);
      t.diagnostic(`${browser}: resumed ${Date.now() - healed} ms after the path healed`);
    } finally {
      await proxy.pass();
      await b.quit();
    }
  });
}
