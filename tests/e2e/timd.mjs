// Starts a real timd (target/debug/timd) for an e2e test, serving the e2e pages and pkg/,
// with an app key known to the test so Tencent's official generator can make its UserSigs.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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

/** Starts timd with `args` added; returns { origin, stop() }. */
export async function startTimd(args = []) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tim-e2e-'));
  const origin = `http://127.0.0.1:${port}`;
  const child = spawn(path.join(root, 'target/debug/timd'), ['serve', '--demo', '--listen', `127.0.0.1:${port}`,
    '--sdkappid', String(SDKAPPID), '--key', KEY, '--data-dir', dataDir,
    '--www-dir', path.join(root, 'tests/e2e/pages'), '--pkg-dir', path.join(root, 'pkg'), ...args],
  { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
  await waitFor(async () => (await fetch(`${origin}/healthz`)).ok, { what: 'timd' });
  return {
    origin,
    port,
    child,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

let n = 0;
export const uniqueUser = (tag) => `${tag}_${process.pid}_${++n}`;
