// Drives tests/e2e/pages/cycles.html (the SDK's create → login → logout|kicked → destroy cycle,
// watched from outside) in one browser against a real timd, in steps, with a snapshot after
// each step: wasm memory, live sockets, pending timers, window/document listeners, and in
// Chromium the JS heap after a forced GC (through chromedriver's CDP passthrough, so the
// browser needs no extra flags). Shared by leaks.test.mjs and bench/sdk-cycles.mjs.
import { launch, waitFor } from './webdriver.mjs';
import { startTimd, official, uniqueUser, SDKAPPID } from './timd.mjs';

/** timd for the cycles: no per-address or per-user rate limits (one page logs its few users in hundreds of times a second). */
// (startTimd runs every e2e server with --login-rate-per-user 0 already.)
export const startCyclesTimd = () => startTimd(['--connection-rate-per-addr', '0', '--login-rate-per-addr', '0']);

/** `count` users with a UserSig each, made up front. */
export function makeUsers(count = 4) {
  return Array.from({ length: count }, () => { const user = uniqueUser('cycles'); return { user, sig: official.genSig(user, 86400) }; });
}

/** Opens the cycles page in `browser`; returns { step(n, opts), close() }. */
export async function openCycles(browser, server, users = makeUsers()) {
  const b = await launch(browser);
  try {
    await b.cmd('POST', '/timeouts', { script: 600000 });
    await b.navigate(`${server.origin}/cycles.html?sdkappid=${SDKAPPID}`);
    await waitFor(() => b.run(() => window.pageReady === true), { what: `${browser}: cycles page`, timeoutMs: 20000 });
  } catch (e) { await b.quit(); throw e; }
  const cdp = (cmd, params = {}) => b.cmd('POST', '/goog/cdp/execute', { cmd, params });
  /** The JS heap in use after a full GC, in Chromium; null elsewhere. */
  const heap = async () => {
    if (browser !== 'chrome') return null;
    await cdp('HeapProfiler.collectGarbage');
    return (await cdp('Runtime.getHeapUsage')).usedSize;
  };
  return {
    baseline: await b.run(() => window.baseline),
    /**
     * Runs `n` more cycles, then (unless `collect: false`) lets the GC collect and the
     * finalizers run; resolves to the page's snapshot after that, with `gcHeap` and, as
     * `beforeGc`, the wasm memory and unfreed objects right after the cycles.
     */
    async step(n, { collect = true, collectRounds, ...opts } = {}) {
      const s = await b.run((k, o) => window.cycles(k, o), n, { users, ...opts });
      const beforeGc = { wasm: s.wasm, unfreed: s.unfreed };
      if (!collect) return { ...s, n, beforeGc, gcHeap: null, gcRounds: null };
      await heap();
      const gcRounds = await b.run((r) => window.collect({ rounds: r }), collectRounds ?? 200);
      const after = await b.run(() => window.probe.snapshot());
      return { ...s, ...after, n, beforeGc, gcHeap: await heap(), gcRounds };
    },
    leftovers: () => b.run(() => window.leftovers),
    session: b,
    close: () => b.quit(),
  };
}

export const kib = (n) => (n == null ? '-' : `${(n / 1024).toFixed(0)} KiB`);

/** One line of figures for a snapshot. */
export function describe(browser, s) {
  const gc = s.gcRounds == null ? '' : ` (${kib(s.beforeGc.wasm)} and ${s.beforeGc.unfreed} before GC)`;
  return `${browser}: cycle ${String(s.cycle).padStart(4)}  wasm ${kib(s.wasm)}  unfreed objects ${s.unfreed}${gc}  sockets ${s.sockets}  timers ${s.timers}`
    + `  intervals ${s.intervals}  listeners ${s.listeners}  sessionStorage keys ${s.storage}`
    + `  JS heap after GC ${kib(s.gcHeap)}  leftover cycles ${s.leftovers}  (${(s.ms / s.n).toFixed(1)} ms/cycle)`;
}

/**
 * What may change between two snapshots of a run after warm-up, both taken after a GC:
 * nothing countable (sockets, timers, listeners back to the baseline after every destroy;
 * at most 2 package objects registered for finalization and not freed), the wasm memory by at
 * most one 64 KiB page and its externref table by a few slots, the JS heap by at most 1 KiB a
 * cycle (measured: about 80 B a cycle of V8 warm-up, gone by cycle 1,500).
 * The GC matters: `destroy` leaves each TIM object's Rust side (~0.9 KiB of wasm memory) to
 * wasm-bindgen's FinalizationRegistry, so without a GC in between the wasm memory grows.
 */
export const BOUNDS = { unfreed: 2, wasmBytes: 65536, tableSlots: 32, heapBytesPerCycle: 1024 };

/** The ways the run from `from` to `to` leaked, as sentences; empty when flat. */
export function problems(baseline, from, to) {
  const p = [];
  if (to.leftovers) p.push(`${to.leftovers} cycles left a socket, timer or listener behind after destroy`);
  if (to.sockets !== 0) p.push(`${to.sockets} WebSockets still open`);
  if (to.timers !== baseline.timers) p.push(`${to.timers} SDK timers pending (baseline ${baseline.timers})`);
  if (to.intervals !== baseline.intervals) p.push(`${to.intervals} SDK intervals running (baseline ${baseline.intervals})`);
  if (to.listeners !== baseline.listeners) p.push(`${to.listeners} window/document listeners (baseline ${baseline.listeners}): ${to.listenerTypes.join(' ')}`);
  if (to.gcRounds != null && to.unfreed > BOUNDS.unfreed) p.push(`${to.unfreed} objects of the package not freed after GC`);
  if (to.wasm - from.wasm > BOUNDS.wasmBytes) p.push(`wasm memory grew ${to.wasm - from.wasm} B from cycle ${from.cycle} to ${to.cycle}`);
  // One key per SDKAppID, reused by each new instance: the page's storage does not grow.
  if (to.storage !== from.storage) p.push(`sessionStorage went from ${from.storage} to ${to.storage} keys from cycle ${from.cycle} to ${to.cycle}`);
  const slots = (s) => s.tables.reduce((a, b) => a + b, 0);
  if (slots(to) - slots(from) > BOUNDS.tableSlots) p.push(`wasm tables grew ${slots(to) - slots(from)} slots from cycle ${from.cycle} to ${to.cycle}`);
  if (from.gcHeap != null && to.gcHeap - from.gcHeap > BOUNDS.heapBytesPerCycle * (to.cycle - from.cycle)) {
    p.push(`JS heap after GC grew ${to.gcHeap - from.gcHeap} B from cycle ${from.cycle} to ${to.cycle}`);
  }
  return p;
}
