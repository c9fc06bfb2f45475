// "A tab that becomes visible again probes at once" (README, "Staying logged in"), in real
// Chromium, Firefox and WebKit: the page's `visibilitychange` (the SDK's page_events.rs hook) makes
// the SDK send a "ping" on the spot, the server's "pong" comes back, and on a dead link (the test
// proxy black-holing it) the missing answer ends the connection after the 5 s probe, long before
// the heartbeat would (two 25 s intervals and a half), and the tab resumes once the path heals.
// The tab page (pages/tab.html) counts the SDK's pings and the pongs on its socket and switches
// `document.visibilityState` as a browser does when the tab is switched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { startTimd, startProxy, official, uniqueUser, SDKAPPID } from './timd.mjs';

/** The SDK's own dead-connection check at the default 25 s heartbeat: 2.5 intervals. */
const HEARTBEAT_DEAD_MS = 62500;
/** How long a dead link may take to show after the tab became visible: the 5 s probe, with
 * room for a busy machine, and far under what the heartbeat alone would take. */
const PROBE_BOUND_MS = 20000;

let timd; // the default heartbeat (25 s): only the probe can tell a dead link quickly
let proxy;

before(async () => {
  timd = await startTimd([]);
  proxy = await startProxy(timd.port);
});

after(async () => {
  proxy?.stop();
  await timd?.stop();
});

const names = (b) => b.run(() => events.map((e) => (e.detail ? `${e.name}:${e.detail}` : e.name)));

/** Hides the tab, then shows it again; what the SDK sent meanwhile on its socket. */
const hideAndShow = (b) => b.run(() => {
  const socket = sockets.length - 1;
  const ws = sockets[socket];
  const start = ws.sdkPings;
  setVisibility('hidden');
  const whileHidden = ws.sdkPings - start;
  setVisibility('visible');
  // Counted before this script returns: the ping went out from the event's own handler.
  return { socket, whileHidden, atOnce: ws.sdkPings - start - whileHidden, pongs: ws.pongs };
});

for (const browser of BROWSERS) {
  test(`${browser}: a tab that becomes visible again probes at once, and a dead link is dropped and resumed`, { timeout: 120000 }, async (t) => {
    const b = await launch(browser);
    try {
      await proxy.pass();
      const user = uniqueUser('visible');
      const q = new URLSearchParams({ sdkappid: String(SDKAPPID), user, sig: official.genSig(user, 600), server: proxy.url });
      await b.navigate(`${timd.origin}/tab.html?${q}`);
      await waitFor(() => b.run(() => window.pageReady === true), { what: 'page' });
      assert.equal((await b.run(() => window.autoLogin)).actionStatus, 'OK');
      // SDK_READY follows the login's resolution (a task later): cleared only once it came.
      await waitFor(() => b.run(() => events.some((e) => e.name === 'sdkStateReady')), { what: 'SDK_READY' });
      await b.run(() => { events.length = 0; });

      // A live link: the probe goes out as the tab shows, and the server answers it.
      const live = await hideAndShow(b);
      assert.deepEqual([live.whileHidden, live.atOnce], [0, 1], 'no ping on hiding, one at once on showing');
      await waitFor(() => b.run((i, n) => sockets[i].pongs > n, live.socket, live.pongs), { what: 'the server\'s pong to the probe' });
      assert.deepEqual(await names(b), [], 'an answered probe changes nothing');
      assert.equal(await b.run(() => tim.isReady()), true);

      // A dead link: the probe goes unanswered, the SDK drops the connection and reconnects.
      await proxy.blackhole();
      const shown = Date.now();
      const dead = await hideAndShow(b);
      assert.deepEqual([dead.whileHidden, dead.atOnce], [0, 1], 'the probe on a dead link');
      await waitFor(async () => (await names(b)).includes('netStateChange:connecting'), { what: 'the dead link detected', timeoutMs: PROBE_BOUND_MS });
      const detected = Date.now() - shown;
      t.diagnostic(`${browser}: dead link detected ${detected} ms after the tab became visible (probe 5 s; the heartbeat alone: ${HEARTBEAT_DEAD_MS} ms)`);
      assert.equal(await b.run((i) => sockets[i].pongs, dead.socket), dead.pongs, 'no pong through the black hole');
      await proxy.pass();
      await waitFor(async () => (await names(b)).includes('netStateChange:connected'), { what: 'resumed', timeoutMs: 40000 });
      assert.deepEqual(await names(b), ['netStateChange:connecting', 'netStateChange:connected']);
      assert.equal(await b.run(() => tim.isReady()), true);
      assert.equal(await b.run(() => roundTrip()), true, 'the new connection answers');
    } finally {
      await proxy.pass();
      await b.quit();
    }
  });
}
