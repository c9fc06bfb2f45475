// Benchmark (not a test): cold start of a page that imports the SDK, tim-wasm (pkg/, as built
// by scripts/build-pkg.sh) side by side with tim-js-sdk 2.27.6 (its ES build, from
// tools/node_modules). Both pages have the same shape: an import map and one module script
// that imports TIM, calls TIM.create and records performance.now() (ms since navigation start).
// Served gzip from a local HTTP server, loaded in Chromium with DevTools network emulation
// (100 ms latency, 10 Mbit/s both ways, cache disabled), a fresh browser context per load, the
// two pages alternating. Prints medians, p90s, the ratio, bytes and the request waterfall of
// one load of each, so round trips show. Exits non-zero only if a page fails to load or
// TIM.create throws; timing is never asserted.
//
//   node tests/e2e/bench/cold-start.mjs [--runs N] [--latency MS] [--kbps KBIT]
//   (or: scripts/bench.sh coldstart [--runs N] ...)
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TOOLS = path.join(ROOT, 'tools');
const { chromium } = createRequire(path.join(TOOLS, 'package.json'))('playwright-core');

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const RUNS = option('runs', 15);
const LATENCY_MS = option('latency', 100);
const BYTES_PER_S = option('kbps', 10000) * 1000 / 8;
const SDKAPPID = 1400000000;

/** Picks the browser ES entry of a package from `exports` (conditions browser/import/default), then `module`, then `main`. */
function esEntry(dir, fallback) {
  const pj = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const pick = (e) => {
    if (typeof e === 'string') return e;
    if (!e || typeof e !== 'object') return undefined;
    if ('.' in e) return pick(e['.']);
    for (const c of ['browser', 'import', 'module', 'default']) if (c in e) { const r = pick(e[c]); if (r) return r; }
    return undefined;
  };
  const entry = pick(pj.exports) || pj.module || fallback || pj.main;
  if (!entry || !fs.existsSync(path.join(dir, entry))) throw new Error(`${dir}: no ES entry (${entry})`);
  return { name: pj.name, version: pj.version, entry: entry.replace(/^\.\//, '') };
}

// tim-js-sdk 2.27.6's package.json names only `main` (the UMD build); its ES build is tim-js.es.js,
// one file with no imports of its own.
const SIDES = [
  { key: 'tim-wasm', dir: path.join(ROOT, 'pkg'), base: '/pkg/' },
  { key: 'tim-js-sdk', dir: path.join(TOOLS, 'node_modules/tim-js-sdk'), base: '/tim-js-sdk/', fallback: 'tim-js.es.js' },
].map((s) => ({ ...s, ...esEntry(s.dir, s.fallback) }));

/** The page: the same for both packages but for the import map's target. */
function page(side) {
  const map = { imports: { [side.key]: side.base + side.entry } };
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>cold start: ${side.key}</title><link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify(map)}</script>
<script type="module">
import TIM from '${side.key}';
const t0 = performance.now();
try {
  const tim = TIM.create({ SDKAppID: ${SDKAPPID} });
  const t1 = performance.now();
  window.coldStart = { t0, t1, ok: typeof tim.login === 'function' };
} catch (e) {
  window.coldStart = { error: String(e && e.stack || e) };
}
</script>
</head><body></body></html>
`;
}

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.html': 'text/html; charset=utf-8', '.ts': 'text/plain' };

/** Static server: the two pages and both package directories, every body gzip -9 (compressed once, kept). */
function serve() {
  const gz = new Map();
  const body = (key, make) => { if (!gz.has(key)) gz.set(key, zlib.gzipSync(make(), { level: 9 })); return gz.get(key); };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = null; let make = null;
    const side = SIDES.find((s) => url.pathname === `/${s.key}.html`);
    if (side) { make = () => Buffer.from(page(side)); file = 'x.html'; }
    for (const s of SIDES) {
      if (!url.pathname.startsWith(s.base)) continue;
      const p = path.resolve(s.dir, decodeURIComponent(url.pathname.slice(s.base.length)));
      if (p.startsWith(s.dir + path.sep) && fs.existsSync(p) && fs.statSync(p).isFile()) { file = p; make = () => fs.readFileSync(p); }
    }
    if (!make) { res.writeHead(404).end(); return; }
    const headers = { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' };
    if (/\bgzip\b/.test(req.headers['accept-encoding'] || '')) {
      res.writeHead(200, { ...headers, 'content-encoding': 'gzip', vary: 'accept-encoding' }).end(body(url.pathname, make));
    } else {
      res.writeHead(200, headers).end(make());
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** One cold load in a fresh context: returns the page's figures and its resource timeline. */
async function load(browser, origin, side) {
  const context = await browser.newContext();
  try {
    const pg = await context.newPage();
    const cdp = await context.newCDPSession(pg);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: LATENCY_MS, downloadThroughput: BYTES_PER_S, uploadThroughput: BYTES_PER_S,
    });
    const problems = [];
    pg.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    pg.on('response', (r) => { if (r.url().startsWith(origin) && r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`); });
    pg.on('requestfailed', (r) => { if (r.url().startsWith(origin)) problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`); });
    await pg.goto(`${origin}/${side.key}.html`, { waitUntil: 'commit' });
    const deadline = Date.now() + 60000;
    let r;
    while (!(r = await pg.evaluate(() => window.coldStart))) {
      if (problems.length) throw new Error(`${side.key}: ${problems.join('; ')}`);
      if (Date.now() > deadline) throw new Error(`${side.key}: TIM.create not reached within 60 s`);
      await new Promise((res) => setTimeout(res, 20));
    }
    if (r.error) throw new Error(`${side.key}: TIM.create threw: ${r.error}`);
    if (!r.ok) throw new Error(`${side.key}: TIM.create returned no instance with login()`);
    const timeline = await pg.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const row = (e) => ({ url: e.name, start: e.startTime, end: e.responseEnd, bytes: e.encodedBodySize, transfer: e.transferSize });
      return [row(nav), ...performance.getEntriesByType('resource').map(row)];
    });
    return { ...r, timeline };
  } finally {
    await context.close();
  }
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const p90 = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.ceil(0.9 * s.length) - 1]; };
const ms = (x) => `${x.toFixed(0).padStart(5)} ms`;
const kb = (x) => `${(x / 1024).toFixed(1)} KB`;

const server = await serve();
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROME_BIN || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage', '--disable-quic'],
});
let failed = false;
try {
  console.log(`cold start: navigation start -> TIM.create returned; Chromium ${browser.version()}, ` +
    `latency ${LATENCY_MS} ms, ${(BYTES_PER_S * 8 / 1e6).toFixed(1)} Mbit/s down/up, cache disabled, gzip -9, ` +
    `HTTP/1.1 on loopback, fresh context per load, ${RUNS} loads each (alternating, after one warm-up load each)`);
  for (const s of SIDES) console.log(`  ${s.key}: ${s.name}@${s.version}, entry ${s.base}${s.entry}`);
  for (const s of SIDES) await load(browser, origin, s);
  const results = Object.fromEntries(SIDES.map((s) => [s.key, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const s of (i % 2 ? [...SIDES].reverse() : SIDES)) results[s.key].push(await load(browser, origin, s));
  }
  console.log('');
  const med = {};
  for (const s of SIDES) {
    const rs = results[s.key];
    const t1 = rs.map((r) => r.t1);
    med[s.key] = median(t1);
    // The page's own loads up to TIM.create: tim-js-sdk's create also starts requests to
    // Tencent's hosts (unreachable here), which are shown in the waterfall but not counted.
    const last = rs[rs.length - 1];
    const before = last.timeline.filter((e) => e.url.startsWith(origin) && e.start <= last.t1);
    const body = before.reduce((n, e) => n + e.bytes, 0);
    const transfer = before.reduce((n, e) => n + e.transfer, 0);
    console.log(`${s.key.padEnd(10)}  create returned: median ${ms(med[s.key])}, p90 ${ms(p90(t1))}` +
      `  (module body started: median ${ms(median(rs.map((r) => r.t0)))}; create itself ${median(rs.map((r) => r.t1 - r.t0)).toFixed(1)} ms)` +
      `  | ${kb(body)} gzip bodies incl. HTML (${kb(transfer)} with headers), ${before.length - 1} request(s) after the HTML`);
  }
  const [a, b] = SIDES.map((s) => med[s.key]);
  console.log(`ratio tim-wasm / tim-js-sdk (medians): ${(a / b).toFixed(2)}x`);
  for (const s of SIDES) {
    const r = results[s.key][results[s.key].length - 1];
    console.log(`\nwaterfall, ${s.key} (last load; ms from navigation start: request start -> end, gzip body):`);
    for (const e of r.timeline) {
      const own = e.url.startsWith(origin);
      const url = own ? e.url.slice(origin.length) : `${e.url}  (external, started by TIM.create; not counted)`;
      console.log(`  ${ms(e.start)} -> ${ms(e.end)}  ${kb(e.bytes).padStart(9)}  ${url}`);
    }
    console.log(`  ${ms(r.t0)}  module body starts\n  ${ms(r.t1)}  TIM.create returned`);
  }
} catch (e) {
  console.error(`cold-start: ${e.message}`);
  failed = true;
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
