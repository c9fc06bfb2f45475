// No leaks in the SDK, in every engine: 300 cycles of TIM.create → login → (logout | kicked by a
// second instance) → destroy in one page (tests/e2e/pages/cycles.html) against a real timd.
// After every destroy the page's WebSockets, the SDK's timers and its window/document
// listeners are back to the baseline; after a GC (CDP in Chromium, allocation pressure in the
// others) every 50 cycles no TIM object is left unfreed, and from cycle 100 to 300 the wasm memory and its
// externref table stay flat, and in Chromium the JS heap too (bounds in cycles.mjs).
// A second test proves the checks fail on deliberate leaks of each kind. The 1,000-cycle
// figures: `scripts/bench.sh cycles`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS } from './webdriver.mjs';
import { startCyclesTimd, openCycles, describe, problems } from './cycles.mjs';

let server;
before(async () => { server = await startCyclesTimd(); });
after(async () => { await server?.stop(); });

for (const browser of BROWSERS) {
  test(`${browser}: 300 create → login → logout|kicked → destroy cycles leave nothing behind`, { timeout: 90000 }, async (t) => {
    const page = await openCycles(browser, server);
    try {
      // Steps of 50 cycles, each ending with a GC: what a GC frees must not count as grown.
      let warm;
      for (let i = 0; i < 2; i++) warm = await page.step(50);
      t.diagnostic(describe(browser, warm));
      let end;
      for (let i = 0; i < 4; i++) { end = await page.step(50); t.diagnostic(describe(browser, end)); }
      // The probes saw the SDK at work (or the counts below would prove nothing).
      assert.ok(end.seen.sockets >= 300, `sockets seen: ${end.seen.sockets}`);
      assert.ok(end.seen.timers >= 300, `SDK timers seen: ${end.seen.timers}`);
      assert.ok(end.seen.listeners >= 300, `listeners seen: ${end.seen.listeners}`);
      assert.ok(end.wasm > 0 && end.tables.length > 0, 'the wasm instance was captured');
      const found = problems(page.baseline, warm, end);
      assert.deepEqual(found, [], `${found.join('; ')}; first leftovers: ${JSON.stringify((await page.leftovers()).slice(0, 5))}`);
    } finally {
      await page.close();
    }
  });
}

// Each deliberate leak on its own page: the checks above must report it. (Chromium only: the
// checks are the same code in every engine.)
test('the checks catch a leaked listener, socket, timer, wasm page and kept TIM objects', { timeout: 120000 }, async () => {
  const cases = [
    ['listener', 5, /listeners/],
    ['socket', 5, /WebSockets still open|left a socket/],
    ['timer', 5, /SDK timers pending/],
    ['wasm', 5, /wasm memory grew/],
    // Destroyed TIM objects kept (as a registry of the SDK that forgot them would).
    ['tim', 20, /not freed after GC/],
  ];
  for (const [leak, n, expected] of cases) {
    const page = await openCycles(BROWSERS.includes('chrome') ? 'chrome' : BROWSERS[0], server);
    try {
      const warm = await page.step(5);
      const end = await page.step(n, { leak, settleMs: 20, collectRounds: 20 });
      const found = problems(page.baseline, warm, end);
      assert.ok(found.some((p) => expected.test(p)), `${leak}: ${JSON.stringify(found)}`);
    } finally {
      await page.close();
    }
  }
});
