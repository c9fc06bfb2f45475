// Starts a real timd (target/debug/timd, or $TIMD_BIN) for an e2e test, serving the e2e pages and pkg/,
// with an app key known to the test so Tencent's official generator can make its UserSigs.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './webdriver.mjs';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(root, 'tools/package.json'));
export const TLSSigAPIv2 = require('tls-sig-api-v2');

export const SDKAPPID = 1400054321;
export const KEY = 'e2e-secret-key-made-for-this-test-run';
/** Tencent's official Node generator, for this app. */
export const official = new TLSSigAPIv2.Api(SDKAPPID, KEY);

// Processes still running when node exits (a failed or interrupted run) go with it.
const children = new Set();
process.on('exit', () => { for (const child of children) child.kill('SIGKILL'); });
/** Kills `child` when node exits, if it still runs. */
export function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Resolves once `child` has exited. */
export function exited(child) {
  return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', r)));
}

/**
 * Starts timd with `args` added; returns { origin, port, restart(), stop() }. In demo mode (the
 * default) it serves the e2e pages and pkg/, and lets every loopback page connect; `demo: false`
 * starts it as in production (pages of other origins need --allowed-origins).
 */
export async function startTimd(args = [], { demo = true } = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tim-e2e-'));
  const origin = `http://127.0.0.1:${port}`;
  const demoArgs = demo ? ['--demo', '--www-dir', path.join(root, 'tests/e2e/pages'), '--pkg-dir', path.join(root, 'pkg')] : [];
  const spawnTimd = async () => {
    const child = track(spawn(process.env.TIMD_BIN || path.join(root, 'target/debug/timd'), ['serve', ...demoArgs, '--listen', `127.0.0.1:${port}`,
      // Tests log one user in many times a second (tab fights, 120 kicks): the per-user
      // login rate (tested natively) would refuse them.
      '--sdkappid', String(SDKAPPID), '--key', KEY, '--data-dir', dataDir, '--login-rate-per-user', '0', ...args],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } }));
    await waitFor(async () => (await fetch(`${origin}/healthz`)).ok, { what: 'timd' }).catch((e) => { child.kill('SIGKILL'); throw e; });
    return child;
  };
  let child = await spawnTimd();
  return {
    origin,
    port,
    /** Stops timd (SIGTERM, or SIGKILL for a crash) and starts it again on the same port
     * and data, with `with` instead of its arguments if given; resolves once the new one
     * answers. */
    async restart({ crash = false, with: newArgs } = {}) {
      child.kill(crash ? 'SIGKILL' : 'SIGTERM');
      await exited(child);
      if (newArgs) args = newArgs;
      child = await spawnTimd();
    },
    /** The value of one series of its `/metrics`, e.g. `timd_ws_refused_total{reason="origin"}`. */
    async metric(series) {
      const text = await (await fetch(`${origin}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      if (!line) throw new Error(`no ${series} in timd's /metrics`);
      return Number(line.slice(series.length + 1));
    },
    async stop() {
      child.kill('SIGTERM');
      await exited(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Whether Redis on `port` answers PING with PONG (not `-LOADING`). */
function pong(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/**
 * Starts Debian's redis-server (scripts/setup.sh installs it) on a free loopback port in a
 * temporary directory, without persistence: the shared engine of a `timd --redis` cluster.
 * Returns { port, url(db), stop() }; `url(1)` is a separate database for a second cluster.
 */
export async function startRedis() {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'tim-e2e-redis-'));
    let log = '';
    const child = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
      '--protected-mode', 'no', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    const stop = async () => {
      child.kill('SIGKILL');
      await exited(child);
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error('exited');
        return pong(port);
      }, { what: 'redis-server', timeoutMs: 10000 });
    } catch (e) {
      await stop();
      // Another process took the port between our probe and Redis's bind.
      if (attempt < 5 && log.includes('Address already in use')) continue;
      throw new Error(`redis-server did not start: ${log}`);
    }
    return {
      port,
      url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
      stop,
      /** Freezes Redis (SIGSTOP): its sockets stay open and nothing answers, as an unreachable one. */
      pause: () => child.kill('SIGSTOP'),
      resume: () => child.kill('SIGCONT'),
    };
  }
}

/** Starts the Rust test proxy (tests/proxy) in front of `upstreamPort`. */
export async function startProxy(upstreamPort) {
  const [port, control] = [await freePort(), await freePort()];
  const child = spawn(path.join(root, 'target/debug/tim-testproxy'), ['--listen', `127.0.0.1:${port}`,
    '--upstream', `127.0.0.1:${upstreamPort}`, '--control', `127.0.0.1:${control}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', () => reject(new Error('proxy exited')));
    // Not built (cargo build -p tim-testproxy): spawn fails with an 'error', no 'exit'.
    child.once('error', (e) => reject(new Error(`tim-testproxy did not start: ${e.message}`)));
  });
  const mode = async (m) => { if (!(await fetch(`http://127.0.0.1:${control}/${m}`, { method: 'POST' })).ok) throw new Error(m); };
  return {
    url: `ws://127.0.0.1:${port}`,
    pass: () => mode('pass'),
    cut: () => mode('cut'),
    blackhole: () => mode('blackhole'),
    stop: () => child.kill(),
  };
}

let n = 0;
export const uniqueUser = (tag) => `${tag}_${process.pid}_${++n}`;
