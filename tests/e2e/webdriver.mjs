// A minimal W3C WebDriver client (fetch + child_process), enough to drive real Chromium,
// Firefox and WebKit windows from node:test: start the driver, open a session, navigate, run
// scripts, open tabs. No browser download: it uses Debian's chromium/chromedriver, firefox-esr
// with geckodriver, and WebKitGTK's MiniBrowser with WebKitWebDriver (webkit2gtk-driver), as
// installed by scripts/setup.sh.
import { spawn } from 'node:child_process';
import net from 'node:net';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}

export async function waitFor(check, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The engines every browser test runs in; `E2E_BROWSERS=webkit` (comma-separated) narrows a run. */
export const BROWSERS = (process.env.E2E_BROWSERS || 'chrome,firefox,webkit').split(',');

// geckodriver refuses requests without it.
const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };

const CHROME_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-dev-shm-usage'];

// WebKitGTK's MiniBrowser; `--automation` lets WebKitWebDriver drive it. These names are the
// ones WebKitWebDriver reads (its defaults too, spelled out so a wrong path fails loudly).
const MINIBROWSER = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';

/** `extra`: capabilities added (`acceptInsecureCerts`), `chromeArgs` added to Chromium's. */
function capabilities(browser, { chromeArgs = [], ...extra } = {}) {
  if (browser === 'webkit') {
    return { ...extra, browserName: 'MiniBrowser', 'webkitgtk:browserOptions': { binary: process.env.MINIBROWSER_BIN || MINIBROWSER, args: ['--automation'] } };
  }
  if (browser === 'chrome') {
    return { ...extra, browserName: 'chrome', 'goog:chromeOptions': { binary: process.env.CHROME_BIN || '/usr/bin/chromium', args: [...CHROME_ARGS, ...chromeArgs] } };
  }
  return {
    ...extra,
    browserName: 'firefox',
    'moz:firefoxOptions': {
      binary: process.env.FIREFOX_BIN || '/usr/bin/firefox-esr',
      args: ['-headless'],
      prefs: { 'network.dns.disableIPv6': true, 'app.update.enabled': false, 'browser.shell.checkDefaultBrowser': false },
    },
  };
}

/**
 * An X server for MiniBrowser, which has no headless mode: `WEBKIT_DISPLAY` if the caller runs
 * one (scripts/test.sh does), otherwise an Xvfb of our own on a free display (`-displayfd`
 * picks it), one per session and killed with it, so a test file runs on its own.
 */
async function xDisplay() {
  if (process.env.WEBKIT_DISPLAY) return { display: process.env.WEBKIT_DISPLAY, stop() {} };
  const xvfb = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  xvfb.stderr.on('data', (d) => { err += d; });
  const display = await new Promise((resolve, reject) => {
    xvfb.stdio[3].on('data', (d) => { out += d; if (out.includes('\n')) resolve(`:${out.trim()}`); });
    xvfb.on('error', reject);
    xvfb.on('exit', (code) => reject(new Error(`Xvfb exited with ${code}: ${err}`)));
  });
  return { display, stop() { xvfb.kill(); } };
}

function driverCommand(browser, port) {
  if (browser === 'chrome') return [process.env.CHROMEDRIVER || '/usr/bin/chromedriver', [`--port=${port}`]];
  if (browser === 'webkit') return [process.env.WEBKITDRIVER || '/usr/bin/WebKitWebDriver', [`--port=${port}`, '--host=127.0.0.1']];
  return [process.env.GECKODRIVER || `${process.env.HOME}/.cargo/bin/geckodriver`, ['--port', String(port), '--host', '127.0.0.1']];
}

// Drivers and X servers still running when node exits (a failed or interrupted run) go with it.
const running = new Set();
process.on('exit', () => { for (const stop of running) stop(); });
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) process.once(signal, () => process.exit(code));

/**
 * Starts chromedriver, geckodriver or WebKitWebDriver (on an X server) and opens one browser
 * session; `options` as `capabilities` takes them.
 */
export async function launch(browser, options) {
  const port = await freePort();
  const x = browser === 'webkit' ? await xDisplay() : { stop() {} };
  const [bin, args] = driverCommand(browser, port);
  const env = x.display ? { ...process.env, DISPLAY: x.display } : process.env;
  // A process group of its own: stopping kills the driver and the browser it started (killing
  // the driver alone left Chromium running after an interrupted run).
  const driver = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], env, detached: true });
  let stderr = '';
  driver.stderr.on('data', (d) => { stderr += d; });
  const stop = () => {
    running.delete(stop);
    try { process.kill(-driver.pid, 'SIGKILL'); } catch { driver.kill(); }
    x.stop();
  };
  running.add(stop);
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => (await fetch(`${base}/status`)).ok, { what: `${browser} driver`, timeoutMs: 15000 });
    const res = await fetch(`${base}/session`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ capabilities: { alwaysMatch: capabilities(browser, options) } }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(`new session failed: ${JSON.stringify(body)} ${stderr}`);
    return new Session(base, body.value.sessionId, stop, browser);
  } catch (e) { stop(); throw e; }
}

export class Session {
  constructor(base, id, stop, browser) { this.base = `${base}/session/${id}`; this.stop = stop; this.browser = browser; }

  async cmd(method, path, body) {
    const res = await fetch(`${this.base}${path}`, { method, headers: JSON_HEADERS, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
    return json.value;
  }

  navigate(url) { return this.cmd('POST', '/url', { url }); }

  /** Runs `fn` (an async function's source) in the page with `args`, returns its result. */
  run(fn, ...args) {
    return this.cmd('POST', '/execute/async', {
      script: `const done = arguments[arguments.length - 1];
        Promise.resolve((${fn})(...Array.from(arguments).slice(0, -1)))
          .then((v) => done({ ok: v }), (e) => done({ err: { code: e && e.code, message: String(e && e.message || e) } }));`,
      args,
    }).then((r) => { if (r && 'err' in r) { const e = new Error(r.err.message); e.code = r.err.code; throw e; } return r && r.ok; });
  }

  /** Opens a new tab and returns its handle (switch to it with `switchTo`). */
  async newTab() { return (await this.cmd('POST', '/window/new', { type: 'tab' })).handle; }
  async handle() { return this.cmd('GET', '/window'); }
  switchTo(handle) { return this.cmd('POST', '/window', { handle }); }

  /** A PNG of the current window's viewport (WebDriver "Take Screenshot"), as a Buffer. */
  async screenshot() { return Buffer.from(await this.cmd('GET', '/screenshot'), 'base64'); }

  async quit() {
    await this.cmd('DELETE', '').catch(() => {});
    this.stop();
  }
}
