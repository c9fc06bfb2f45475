// Benchmark (not a test): login → SDK_READY in a real headless browser against timd on
// loopback, next to a raw JS WebSocket (new socket, open, one round trip) to the same server.
// Medians over 35 logins, with the timeline of the SDK's own socket (constructed, open, login
// frame sent, answer received, Promise resolved). Run by `scripts/bench.sh browser`.
import { test, before, after } from 'node:test';
import { launch, waitFor } from '../webdriver.mjs';
import { startTimd, official, uniqueUser, SDKAPPID } from '../timd.mjs';
let one;
before(async () => { one = await startTimd(['--web-instances', '10', '--login-policy', 'all']); });
after(async () => { await one.stop(); });
for (const browser of ['chrome', 'firefox']) test(`${browser}: login to SDK_READY vs a raw WebSocket round trip`, { timeout: 60000 }, async (t) => {
  const b = await launch(browser);
  const user = uniqueUser('rtt');
  const sig = official.genSig(user, 600);
  await b.navigate(`${one.origin}/tab.html?sdkappid=${SDKAPPID}&user=${user}&sig=${encodeURIComponent(sig)}`);
  await waitFor(() => b.run(() => window.pageReady === true));
  await b.run(() => window.autoLogin);
  const r = await b.run(async (u, s) => {
    const TIM = tim.constructor;
    let cur = null;
    const Orig = WebSocket;
    window.WebSocket = class extends Orig {
      constructor(...a) { super(...a); cur.ctor = performance.now() - cur.t0;
        this.addEventListener('open', () => { cur.open = performance.now() - cur.t0; });
        this.addEventListener('message', () => { if (!cur.msg) cur.msg = performance.now() - cur.t0; }); }
      send(x) { if (!cur.send) cur.send = performance.now() - cur.t0; return super.send(x); }
    };
    const rows = [];
    for (let i = 0; i < 40; i++) {
      const x = TIM.create({ SDKAppID: Number(new URLSearchParams(location.search).get('sdkappid')) });
      await new Promise((r) => setTimeout(r, 20));
      cur = { t0: performance.now() };
      await x.login({ userID: u, userSig: s });
      cur.done = performance.now() - cur.t0;
      rows.push(cur);
      await x.destroy();
      await new Promise((r) => setTimeout(r, 20));
      const t1 = performance.now();
      const ws = new Orig(location.origin.replace('http', 'ws') + '/ws');
      await new Promise((r) => { ws.onopen = r; });
      ws.send('"ping"');
      await new Promise((r) => { ws.onmessage = r; });
      cur.raw = performance.now() - t1;
      ws.close();
    }
    const med = (k) => { const a = rows.slice(5).map((r) => r[k]).sort((p, q) => p - q); return a[a.length >> 1]; };
    return Object.fromEntries(['ctor', 'open', 'send', 'msg', 'done', 'raw'].map((k) => [k, med(k)]));
  }, user, sig);
  t.diagnostic(`${browser}: login to SDK_READY ${r.done.toFixed(1)} ms, raw connect + round trip ${r.raw.toFixed(1)} ms: ${(r.done / r.raw).toFixed(2)}x (timeline, ms from login(): socket ${r.ctor.toFixed(1)}, open ${r.open.toFixed(1)}, login sent ${r.send.toFixed(1)}, answer ${r.msg.toFixed(1)})`);
  await b.quit();
});
