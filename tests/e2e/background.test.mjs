// Hours in a background tab, shortened: a logged-in page hidden in headed Chromium under
// intensive wake-up throttling (chained timers cut to one wake-up a minute) stays connected on
// the server's pings alone — 0 reconnects — while a frozen and then a killed server are still
// noticed. The run lasts BACKGROUND_MINUTES (1.5 by default) at a 2 s heartbeat, short enough
// that a client pinging from a chained timer in the same page (the control) is dropped
// several times meanwhile (see background.mjs; `scripts/bench.sh background --minutes 10`
// is the long run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS } from './webdriver.mjs';
import { runBackground } from './background.mjs';

const minutes = Number(process.env.BACKGROUND_MINUTES || 1.5);
const heartbeatMs = 2000;

test('chrome: a page hidden under intensive throttling stays connected; dead servers are still noticed',
  { skip: !BROWSERS.includes('chrome') && 'chrome not in E2E_BROWSERS', timeout: (minutes + 6) * 60_000 }, async (t) => {
    const f = await runBackground({ minutes, heartbeatMs, log: (line) => t.diagnostic(line) });
    assert.ok(f.timerProbe.longGaps >= 1, `intensive throttling was in force (a chained timer slept >= 30 s): ${JSON.stringify(f.timerProbe)}`);
    assert.ok(f.controlDrops >= 1, `a client pinging from a chained timer in the same page was dropped: ${f.controlDrops}`);
    assert.equal(f.reconnects, 0, `no reconnect while hidden: ${f.events}`);
    assert.deepEqual(f.events, [], 'no event at all while hidden');
    // The SDK's dead-server check is armed from its message handler, so it is not cut to a
    // wake-up a minute; allow one throttled minute all the same.
    assert.ok(f.frozenDetectedMs <= 2 * heartbeatMs + 1000 + 65_000, `frozen server noticed in ${f.frozenDetectedMs} ms`);
    assert.ok(f.killedDetectedMs <= 65_000, `killed server noticed in ${f.killedDetectedMs} ms`);
    assert.deepEqual(f.faultEvents, ['netStateChange:connecting', 'netStateChange:connected'], 'resumed: nothing but NET_STATE_CHANGE');
    assert.ok(f.stillHidden, 'hidden throughout');
    assert.ok(f.ready, 'still logged in');
  });
