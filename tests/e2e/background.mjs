// A logged-in page left hidden in a real, headed Chromium (on Xvfb) with intensive wake-up
// throttling in force, counting its reconnects; then, still hidden, a frozen server (SIGSTOP:
// no FIN, only the SDK's own timer can notice) and a killed one (kill -9, then restarted).
// Used by background.test.mjs (a short run) and bench/background.mjs
// (`scripts/bench.sh background --minutes 10`).
//
// Why this setup: headless Chromium does not throttle hidden pages' timers, and Chromium
// driven by chromedriver or launched by Playwright keeps every page "visible" (focus emulation
// counts as capturing the page). So Chromium is started here by hand with a DevTools port,
// Playwright attaches to it with `noDefaults` (no focus emulation), and the page is hidden the
// way a user hides it: another tab of the same window comes to the front.
// `IntensiveWakeUpThrottling:grace_period_seconds/10` shortens the grace before chained timers
// are cut to one wake-up a minute (5 min by default); the run measures that it took effect.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from './webdriver.mjs';
import { root, official, uniqueUser, SDKAPPID, KEY } from './timd.mjs';

const require = createRequire(path.join(root, 'tools/package.json'));
const { chromium } = require('playwright-core');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
const exited = (child) => new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', r)));

/** timd on its own port and data, with the binary and package given (the current ones by default). */
async function startTimd({ bin, pkgDir, heartbeatMs }) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tim-bg-'));
  const origin = `http://127.0.0.1:${port}`;
  const spawnTimd = async () => {
    const child = track(spawn(bin, ['serve', '--demo', '--listen', `127.0.0.1:${port}`,
      '--sdkappid', String(SDKAPPID), '--key', KEY, '--data-dir', dataDir, '--heartbeat-ms', String(heartbeatMs),
      '--www-dir', path.join(root, 'tests/e2e/pages'), '--pkg-dir', pkgDir],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } }));
    await waitFor(async () => (await fetch(`${origin}/healthz`)).ok, { what: 'timd' });
    return child;
  };
  let child = await spawnTimd();
  return {
    origin,
    signal: (s) => child.kill(s),
    async crash() { child.kill('SIGKILL'); await exited(child); },
    async start() { child = await spawnTimd(); },
    async stop() { child.kill('SIGCONT'); child.kill('SIGTERM'); await exited(child); rmSync(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 }); },
  };
}

/** An X server: WEBKIT_DISPLAY when scripts/test.sh runs one, else an Xvfb of our own. */
async function xDisplay() {
  if (process.env.WEBKIT_DISPLAY) return { display: process.env.WEBKIT_DISPLAY, stop() {} };
  const xvfb = track(spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'],
    { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] }));
  const display = await new Promise((resolve, reject) => {
    let out = '';
    xvfb.stdio[3].on('data', (d) => { out += d; if (out.includes('\n')) resolve(`:${out.trim()}`); });
    xvfb.once('exit', (code) => reject(new Error(`Xvfb exited with ${code}`)));
  });
  return { display, stop() { xvfb.kill(); } };
}

/** Headed Chromium with a DevTools port, and Playwright attached without focus emulation. */
async function headedChromium(display, graceSeconds) {
  const profile = mkdtempSync(path.join(tmpdir(), 'tim-bg-chromium-'));
  const chrome = track(spawn(process.env.CHROME_BIN || '/usr/bin/chromium', [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic',
    `--enable-features=IntensiveWakeUpThrottling:grace_period_seconds/${graceSeconds}`,
    '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank',
  ], { env: { ...process.env, DISPLAY: display }, stdio: ['ignore', 'ignore', 'pipe'] }));
  const endpoint = await new Promise((resolve, reject) => {
    let err = '';
    chrome.stderr.on('data', (d) => { err += d; const m = err.match(/DevTools listening on (ws:\S+)/); if (m) resolve(m[1]); });
    chrome.once('exit', (code) => reject(new Error(`chromium exited with ${code}: ${err}`)));
  });
  chrome.stderr.resume();
  const browser = await chromium.connectOverCDP(endpoint, { noDefaults: true });
  return {
    context: browser.contexts()[0],
    async close() {
      await browser.close().catch(() => {});
      chrome.kill();
      await exited(chrome);
      // Chromium's helper processes may still be writing the profile as the main one exits:
      // removed with retries (ENOTEMPTY), and a left-over temp dir is no failure of the test.
      try {
        rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
      } catch (e) {
        console.error(`left ${profile} behind: ${e.message}`);
      }
    },
  };
}

const names = (page) => page.evaluate(() => events.map((e) => (e.detail ? `${e.name}:${e.detail}` : e.name)));
const count = (list, name) => list.filter((n) => n === name).length;

/**
 * Runs the scenario; returns its figures. `log` gets progress lines. Options: `minutes` hidden,
 * `heartbeatMs` (timd's), `graceSeconds` (Chromium's), `bin` / `pkgDir` (timd and SDK to test).
 */
export async function runBackground({
  minutes = 1.5,
  heartbeatMs = 2000,
  graceSeconds = 10,
  bin = process.env.TIMD_BIN || path.join(root, 'target/debug/timd'),
  pkgDir = path.join(root, 'pkg'),
  faults = true,
  log = () => {},
} = {}) {
  const timd = await startTimd({ bin, pkgDir, heartbeatMs });
  const x = await xDisplay();
  let chrome;
  try {
    chrome = await headedChromium(x.display, graceSeconds);
    const { context } = chrome;
    const page = context.pages()[0] || await context.newPage();
    const user = uniqueUser('bg');
    const q = new URLSearchParams({ sdkappid: String(SDKAPPID), user, sig: official.genSig(user, 86400) });
    // Every frame the page sends, with its time: the heartbeat's cadence while hidden.
    const sent = [];
    page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => sent.push({ at: Date.now(), text: String(payload).slice(0, 40) })));
    await page.goto(`${timd.origin}/tab.html?${q}`);
    await waitFor(() => page.evaluate(() => window.pageReady === true), { what: 'page' });
    const login = await page.evaluate(() => window.autoLogin);
    if (login?.actionStatus !== 'OK') throw new Error(`login: ${JSON.stringify(login)}`);
    // SDK_READY follows the login's resolution (a task later): the events are cleared below
    // only once it came.
    await waitFor(() => page.evaluate(() => events.some((e) => e.name === 'sdkStateReady')), { what: 'SDK_READY' });
    // A chained 1 s timer, as an app would have: its gaps show the throttling the page is
    // under. And a control: a bare WebSocket client in the same page that keeps itself alive
    // the old way, a `"ping"` from a chained timer every heartbeat interval (never answering
    // the server's pings); its drops (4003) show what the throttling does to a timer-driven
    // heartbeat, side by side with the SDK.
    const controlUser = uniqueUser('bgctl');
    await page.evaluate(({ user, usersig, sdkappid, heartbeatMs }) => {
      events.length = 0;
      window.ticks = [];
      const tick = () => { ticks.push(performance.now()); setTimeout(tick, 1000); };
      tick();
      window.control = { drops: 0, closes: [] };
      const connect = () => {
        const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws`);
        const beat = () => { if (ws.readyState === 1) { ws.send('"ping"'); setTimeout(beat, heartbeatMs); } };
        ws.onopen = () => ws.send(JSON.stringify({ login: { seq: 1, sdkappid, user, usersig, platform: 'Web', instance: 'control' } }));
        ws.onmessage = (e) => { if (e.data.includes('login_ok')) setTimeout(beat, heartbeatMs); };
        ws.onclose = (e) => {
          control.closes.push(e.code);
          if (e.code === 4003) control.drops++;
          setTimeout(connect, 500);
        };
      };
      connect();
    }, { user: controlUser, usersig: official.genSig(controlUser, 86400), sdkappid: SDKAPPID, heartbeatMs });

    const cover = await context.newPage();
    await cover.goto('about:blank');
    await cover.bringToFront();
    await waitFor(async () => (await page.evaluate(() => document.visibilityState)) === 'hidden', { what: 'page hidden' });
    const hiddenAt = Date.now();
    log(`hidden (heartbeat ${heartbeatMs} ms, throttling grace ${graceSeconds} s) for ${minutes} min`);
    const end = hiddenAt + minutes * 60_000;
    while (Date.now() < end) {
      await sleep(Math.min(30_000, end - Date.now()));
      const seen = await names(page);
      log(`${((Date.now() - hiddenAt) / 60_000).toFixed(1)} min hidden: ${count(seen, 'netStateChange:connecting')} reconnects`);
    }
    const timerProbe = () => page.evaluate(() => {
      const gaps = ticks.slice(1).map((t, i) => t - ticks[i]);
      return { ticks: ticks.length, maxGapMs: Math.round(Math.max(...gaps)), longGaps: gaps.filter((g) => g >= 30_000).length };
    });
    // Intensive throttling wakes chained timers on minute boundaries: how the first boundary
    // falls after the grace decides whether a short run sees a full gap (>= 30 s) yet. Stay
    // hidden until it does (at most 1.5 min more, two boundaries), so the run always checks
    // the SDK under the throttling it names, whatever the phase.
    let probe = await timerProbe();
    const extendUntil = end + 90_000;
    let extended = false;
    while (probe.longGaps < 1 && Date.now() < extendUntil) {
      extended = true;
      await sleep(5_000);
      probe = await timerProbe();
    }
    if (extended) log(`stayed hidden ${((Date.now() - end) / 1000).toFixed(0)} s more, until a chained timer's gap showed the throttling`);
    const hidden = await names(page);
    const figures = {
      hiddenMinutes: (Date.now() - hiddenAt) / 60_000,
      heartbeatMs,
      reconnects: count(hidden, 'netStateChange:connecting'),
      controlDrops: await page.evaluate(() => control.drops),
      notReady: count(hidden, 'sdkStateNotReady'),
      kicked: count(hidden, 'kickedOut'),
      timerProbe: probe,
      events: hidden,
      sentWhileHidden: sent.filter((f) => f.at >= hiddenAt).map((f) => ({ s: Math.round((f.at - hiddenAt) / 1000), text: f.text })),
    };
    log(`hidden ${figures.hiddenMinutes.toFixed(1)} min: ${figures.reconnects} reconnects (a timer-driven ping client beside it: dropped ${figures.controlDrops} times); chained 1 s timer woke ${probe.ticks} times, longest gap ${(probe.maxGapMs / 1000).toFixed(1)} s, ${probe.longGaps} gaps >= 30 s`);

    if (faults) {
      // A frozen server keeps its sockets open: only the SDK's own timer can tell.
      await page.evaluate(() => { events.length = 0; });
      timd.signal('SIGSTOP');
      let at = Date.now();
      await waitFor(async () => (await names(page)).includes('netStateChange:connecting'), { what: 'frozen server detected', timeoutMs: 3 * 60_000, intervalMs: 250 });
      figures.frozenDetectedMs = Date.now() - at;
      timd.signal('SIGCONT');
      at = Date.now();
      await waitFor(async () => (await names(page)).includes('netStateChange:connected'), { what: 'back after SIGCONT', timeoutMs: 3 * 60_000, intervalMs: 250 });
      figures.frozenBackMs = Date.now() - at;
      log(`frozen server (SIGSTOP) noticed after ${figures.frozenDetectedMs} ms hidden (bound: 2 x ${heartbeatMs} ms + margin), back ${figures.frozenBackMs} ms after SIGCONT`);

      await page.evaluate(() => { events.length = 0; });
      await timd.crash();
      at = Date.now();
      await waitFor(async () => (await names(page)).includes('netStateChange:connecting'), { what: 'killed server detected', timeoutMs: 3 * 60_000, intervalMs: 250 });
      figures.killedDetectedMs = Date.now() - at;
      await timd.start();
      at = Date.now();
      await waitFor(async () => (await names(page)).includes('netStateChange:connected'), { what: 'back after restart', timeoutMs: 3 * 60_000, intervalMs: 250 });
      figures.killedBackMs = Date.now() - at;
      log(`killed server (kill -9) noticed after ${figures.killedDetectedMs} ms hidden, back ${figures.killedBackMs} ms after the restart`);
      figures.faultEvents = await names(page);
    }
    figures.stillHidden = (await page.evaluate(() => document.visibilityState)) === 'hidden';
    figures.ready = await page.evaluate(() => tim.isReady());
    return figures;
  } finally {
    // Each step on its own: one that fails must not leave Xvfb or timd running, which would
    // keep this test file's process (and the whole e2e run after it) from ever ending.
    await chrome?.close().catch((e) => console.error(`closing Chromium: ${e.message}`));
    x.stop();
    await timd.stop().catch((e) => console.error(`stopping timd: ${e.message}`));
  }
}
