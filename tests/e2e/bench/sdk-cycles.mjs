// Benchmark (figures, not asserted): 1,000 cycles of TIM.create → login → (logout | kicked by a
// second instance) → destroy in one page, in Chromium, Firefox and WebKit, against a real timd.
// Prints per 100 cycles the wasm memory, live WebSockets, pending SDK timers, window/document
// listeners, sessionStorage keys and (Chromium) the JS heap after a forced GC, then each
// series' slope after warm-up (least squares over cycles 200..N). Run by `scripts/bench.sh cycles`.
//
//   node tests/e2e/bench/sdk-cycles.mjs [--cycles 1000] [--every 100] [--browsers chrome,firefox,webkit] [--no-gc]
//
// By default each step ends with a GC (CDP in Chromium, allocation pressure elsewhere) and the
// figures are taken after it; --no-gc leaves the GC to the engine.
import { startCyclesTimd, openCycles, describe } from '../cycles.mjs';
import { BROWSERS } from '../webdriver.mjs';

const arg = (name, dflt) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };
const total = Number(arg('cycles', 1000));
const every = Number(arg('every', 100));
const browsers = arg('browsers', BROWSERS.join(',')).split(',');
const warm = Math.min(200, total - 2 * every);
// --no-gc: no collection between steps, to see what waits for the GC.
const collect = !process.argv.includes('--no-gc');

/** Least-squares slope of `y` over `x`. */
function slope(points) {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  const num = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const den = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return den ? num / den : 0;
}

const server = await startCyclesTimd();
let failed = false;
try {
  for (const browser of browsers) {
    const page = await openCycles(browser, server);
    const rows = [];
    try {
      console.log(`${browser}: baseline  wasm ${page.baseline.wasm} B  listeners ${page.baseline.listeners}  timers ${page.baseline.timers}`);
      while (rows.length * every < total) {
        const s = await page.step(every, { collect });
        rows.push(s);
        console.log(describe(browser, s));
      }
      const after = rows.filter((r) => r.cycle >= warm);
      const series = { wasm: 'B', unfreed: '', gcHeap: 'B', sockets: '', timers: '', listeners: '', storage: 'keys' };
      const slopes = Object.entries(series).filter(([k]) => after.every((r) => r[k] != null))
        .map(([k, unit]) => `${k} ${slope(after.map((r) => [r.cycle, r[k]])).toFixed(3)}${unit ? ` ${unit}` : ''}/cycle`);
      console.log(`${browser}: slope over cycles ${warm}..${rows.at(-1).cycle}: ${slopes.join(', ')}`);
      const last = rows.at(-1);
      const seen = last.seen;
      console.log(`${browser}: made in all: ${seen.sockets} sockets, ${seen.timers} SDK timers, ${seen.listeners} listeners; cycles with something left after destroy: ${last.leftovers}`);
      if (last.leftovers) { failed = true; console.log(`${browser}: leftovers ${JSON.stringify((await page.leftovers()).slice(0, 10))}`); }
    } catch (e) {
      failed = true;
      console.log(`${browser}: FAILED ${e.stack || e}`);
    } finally {
      await page.close();
    }
  }
} finally {
  await server.stop();
}
process.exit(failed ? 1 : 0);
