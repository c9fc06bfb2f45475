// Benchmark (figures, not asserted): a logged-in page hidden for N minutes in headed Chromium
// under intensive wake-up throttling (one wake-up a minute for chained timers), counting its
// reconnects, then, still hidden, how long a frozen (SIGSTOP) and a killed (kill -9) timd take
// to be noticed. Run by `scripts/bench.sh background`.
//
//   node tests/e2e/bench/background.mjs [--minutes 10] [--heartbeat-ms 25000] [--grace-seconds 10]
//        [--timd BIN --pkg DIR]   # another timd binary and SDK package, e.g. an older build
//        [--no-faults]
import path from 'node:path';
import { runBackground } from '../background.mjs';

const arg = (name, dflt) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };
const opts = {
  minutes: Number(arg('minutes', 10)),
  heartbeatMs: Number(arg('heartbeat-ms', 25000)),
  graceSeconds: Number(arg('grace-seconds', 10)),
  faults: !process.argv.includes('--no-faults'),
  log: (line) => console.log(`# ${line}`),
};
if (arg('timd')) opts.bin = path.resolve(arg('timd'));
if (arg('pkg')) opts.pkgDir = path.resolve(arg('pkg'));
const f = await runBackground(opts);
console.log(`background: ${f.hiddenMinutes.toFixed(1)} min hidden, heartbeat ${f.heartbeatMs} ms: ${f.reconnects} reconnects`
  + ` (${(f.reconnects / f.hiddenMinutes).toFixed(2)}/min), SDK_NOT_READY ${f.notReady}, KICKED_OUT ${f.kicked};`
  + ` a client pinging from a chained timer beside it: dropped ${f.controlDrops} times (${(f.controlDrops / f.hiddenMinutes).toFixed(2)}/min);`
  + ` chained 1 s timer: ${f.timerProbe.ticks} wake-ups, longest gap ${(f.timerProbe.maxGapMs / 1000).toFixed(1)} s`);
if (opts.faults) {
  console.log(`background: frozen timd noticed in ${f.frozenDetectedMs} ms, back ${f.frozenBackMs} ms after SIGCONT;`
    + ` killed timd noticed in ${f.killedDetectedMs} ms, back ${f.killedBackMs} ms after its restart`);
}
