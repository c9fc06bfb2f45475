// The tarball is the artifact: pkg/ is packed with `npm pack`, the tarball is checked for
// completeness, then installed — as npm would deliver it — into consumer projects made from
// templates/ (a plain module page with an import map, Vite dev server and production build,
// webpack 5, esbuild, and a TypeScript type-check). Each page runs the seed sample against a
// real timd in real Chromium, Firefox and WebKit: login -> SDK_READY, a second tab of the same page
// kicks the first (multipleAccount, one Web instance by default), logout -> SDK_NOT_READY,
// destroy, and a later login rejects with 2905.
//
// Needs pkg/ built and target/debug/timd (scripts/consumers.sh does both). CONSUMER_BROWSERS
// (default "chrome,firefox,webkit") and CONSUMERS (default all, comma-separated names) narrow the run;
// TIM_WASM_TARBALL tests a given tarball instead of packing pkg/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launch, waitFor, freePort } from '../e2e/webdriver.mjs';
import { startTimd, official, uniqueUser, root, SDKAPPID } from '../e2e/timd.mjs';
import { packPackage, checkTarball, cargoVersion } from '../../scripts/check-package.mjs';
import { createProject, run, mustRun, htmlIntoDist, startServer, tail } from './projects.mjs';
import { serveStatic } from './static-server.mjs';

const BROWSERS = (process.env.CONSUMER_BROWSERS || 'chrome,firefox,webkit').split(',');

let work;
let tarball;
let timd;
const cleanups = [];
const memo = new Map();
/** Runs `fn` once per key; every caller gets the same promise (and the same failure). */
function once(key, fn) {
  if (!memo.has(key)) memo.set(key, fn());
  return memo.get(key);
}

function project(template) {
  return once(`project:${template}`, () => createProject(template, path.join(work, template), tarball));
}
function getTimd() {
  return once('timd', async () => { timd = await startTimd(); return timd; });
}
function browser(name) {
  return once(`browser:${name}`, async () => {
    const b = await launch(name);
    cleanups.push(() => b.quit());
    return b;
  });
}

/** Serves the files of `template`'s project as a plain web host does (no build step). */
async function staticSite(template) {
  const srv = await serveStatic(await project(template));
  cleanups.push(srv.close);
  return { origin: srv.origin, diagnose: () => `files the page asked for and did not get: ${JSON.stringify(srv.missing)}` };
}

/** Each consumer: how its project is built and served; `diagnose` tells why a page did not start. */
const CONSUMERS = {
  'plain module page (import map)': { template: 'plain', serve() { return staticSite(this.template); } },
  'script-tag page (<script src>, global TIM)': { template: 'script-tag', serve() { return staticSite(this.template); } },
  'Vite dev server': {
    template: 'vite',
    async serve() {
      const dir = await project(this.template);
      const origin = `http://127.0.0.1:${await freePort()}`;
      const srv = await startServer('vite dev server', path.join(dir, 'node_modules/.bin/vite'),
        ['--host', '127.0.0.1', '--port', new URL(origin).port, '--strictPort'], { cwd: dir, origin });
      cleanups.push(srv.stop);
      return { origin, diagnose: () => `vite output:\n${tail(srv.output(), 30)}` };
    },
  },
  'Vite production build (vite preview)': {
    template: 'vite',
    async serve() {
      const dir = await project(this.template);
      await mustRun('vite build', 'npm', ['run', '--silent', 'build'], { cwd: dir });
      const origin = `http://127.0.0.1:${await freePort()}`;
      const srv = await startServer('vite preview', path.join(dir, 'node_modules/.bin/vite'),
        ['preview', '--host', '127.0.0.1', '--port', new URL(origin).port, '--strictPort'], { cwd: dir, origin });
      cleanups.push(srv.stop);
      return { origin, diagnose: () => `vite preview output:\n${tail(srv.output(), 30)}` };
    },
  },
  'webpack 5 production build': {
    template: 'webpack',
    async serve() {
      const dir = await project(this.template);
      await mustRun('webpack build', 'npm', ['run', '--silent', 'build'], { cwd: dir });
      const srv = await serveStatic(htmlIntoDist(dir));
      cleanups.push(srv.close);
      return { origin: srv.origin, diagnose: () => `files the page asked for and did not get: ${JSON.stringify(srv.missing)}` };
    },
  },
  'esbuild bundle': {
    template: 'esbuild',
    async serve() {
      const dir = await project(this.template);
      await mustRun('esbuild bundle', 'npm', ['run', '--silent', 'build'], { cwd: dir });
      const srv = await serveStatic(htmlIntoDist(dir));
      cleanups.push(srv.close);
      return { origin: srv.origin, diagnose: () => `files the page asked for and did not get: ${JSON.stringify(srv.missing)}` };
    },
  },
};
const selected = process.env.CONSUMERS ? process.env.CONSUMERS.split(',') : null;
const wanted = (name) => !selected || selected.some((s) => name.toLowerCase().includes(s.trim().toLowerCase()));

before(() => {
  work = mkdtempSync(path.join(tmpdir(), 'tim-consumers-'));
  mkdirSync(path.join(work, 'pack'));
  tarball = process.env.TIM_WASM_TARBALL
    ? path.resolve(process.env.TIM_WASM_TARBALL)
    : packPackage(path.join(root, 'pkg'), path.join(work, 'pack')).tarball;
  // Install every project at once (mostly disk and npm cache); each test awaits its own.
  const templates = Object.entries(CONSUMERS).filter(([name]) => wanted(name)).map(([, c]) => c.template);
  for (const t of new Set([...(wanted('TypeScript') ? ['typescript'] : []), ...templates])) project(t).catch(() => {});
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await timd?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the packed tarball ships every file its modules import, and package.json is publish-ready', () => {
  const { problems, files } = checkTarball(tarball, { expectedVersion: cargoVersion() });
  assert.deepEqual(problems, [], `${path.basename(tarball)} (files: ${files.join(', ')}) has problems:\n  ${problems.join('\n  ')}`);
});

test('TypeScript: the seed sample type-checks with tsc --strict against the shipped declarations', { timeout: 300000, skip: !wanted('TypeScript') }, async () => {
  const dir = await project('typescript');
  await mustRun('tsc --strict --noEmit', 'npm', ['run', '--silent', 'typecheck'], { cwd: dir });
});

test('TypeScript: the same check fails when the package ships no declarations', { timeout: 300000, skip: !wanted('TypeScript') }, async () => {
  const dir = await project('typescript');
  const installed = path.join(dir, 'node_modules/tim-wasm');
  const types = path.join(installed, JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')).types);
  renameSync(types, `${types}.hidden`);
  try {
    const { code, output } = await run('npm', ['run', '--silent', 'typecheck'], { cwd: dir });
    assert.notEqual(code, 0, 'tsc --strict must fail without the declarations');
    assert.match(output, /TS7016/, `tsc must say it found no declaration file for 'tim-wasm':\n${tail(output)}`);
  } finally {
    renameSync(`${types}.hidden`, types);
  }
});

/** Opens `url` in a new tab and waits for the page's first login; returns the tab's handle. */
async function openTab(b, url, consumer, which) {
  const handle = await b.newTab();
  await b.switchTo(handle);
  await b.navigate(url).catch((e) => assert.fail(`the ${which} tab could not load the page: ${e.message.slice(0, 300)}; ${consumer.diagnose()}`));
  const state = await waitFor(() => b.run(() => (window.pageReady === true ? 'ready'
    : window.pageErrors && window.pageErrors.length ? 'errors' : false)), { what: `the ${which} tab's page`, timeoutMs: 30000 })
    .catch(() => 'timeout');
  if (state !== 'ready') {
    if (state === 'errors') await new Promise((r) => setTimeout(r, 500)); // let related errors land
    const errors = await b.run(() => window.pageErrors).catch((e) => `(cannot read: ${e.message})`);
    assert.fail(`the ${which} tab's page did not start (${state}); page errors: ${JSON.stringify(errors)}; ${consumer.diagnose()}`);
  }
  return handle;
}

async function closeTab(b, handle, home) {
  await b.switchTo(handle).catch(() => {});
  await b.cmd('DELETE', '/window').catch(() => {});
  await b.switchTo(home).catch(() => {});
}

const OK = { actionStatus: 'OK', errorCode: 0, errorInfo: '' };

for (const [name, consumerDef] of Object.entries(CONSUMERS)) {
  if (!wanted(name)) continue;
  for (const browserName of BROWSERS) {
    test(`${name} in ${browserName}: login, kicked by a second tab, logout, destroy`, { timeout: 300000 }, async () => {
      const [consumer, server, b] = await Promise.all([once(`serve:${name}`, () => consumerDef.serve()), getTimd(), browser(browserName)]);
      const user = uniqueUser('consumer');
      const q = new URLSearchParams({ sdkappid: String(SDKAPPID), server: `ws://127.0.0.1:${server.port}`, user, sig: official.genSig(user, 600) });
      const url = `${consumer.origin}/?${q}`;
      const home = await b.handle();
      const tabs = [];
      try {
        tabs.push(await openTab(b, url, consumer, 'first'));
        assert.deepEqual(await b.run(() => window.firstLogin), { data: OK }, 'the first tab\'s login');
        await waitFor(() => b.run(() => events.includes('sdkStateReady')), { what: 'SDK_READY in the first tab' });

        tabs.push(await openTab(b, url, consumer, 'second'));
        assert.deepEqual(await b.run(() => window.firstLogin), { data: OK }, 'the second tab\'s login');
        await waitFor(() => b.run(() => events.includes('sdkStateReady')), { what: 'SDK_READY in the second tab' });

        await b.switchTo(tabs[0]);
        await waitFor(() => b.run(() => events.includes('kickedOut:multipleAccount')),
          { what: 'KICKED_OUT multipleAccount in the first tab' }).catch(async (e) => {
          assert.fail(`${e.message}; its events: ${JSON.stringify(await b.run(() => events))}`);
        });

        await b.switchTo(tabs[1]);
        assert.ok(!(await b.run(() => events)).some((e) => e.startsWith('kickedOut')), 'the second tab must not be kicked');
        const logout = await b.run(() => seedLogout());
        assert.ok(logout.data && !logout.error, `logout in the second tab must resolve, got ${JSON.stringify(logout)}`);
        await waitFor(() => b.run(() => events.includes('sdkStateNotReady')), { what: 'SDK_NOT_READY after logout' });
        assert.equal(await b.run(() => seedDestroy()), 'sdk destroyed');
        const later = await b.run(() => seedLogin());
        assert.equal(later.error && later.error.code, 2905, `a login after destroy must reject with 2905, got ${JSON.stringify(later)}`);
      } finally {
        for (const h of tabs) await closeTab(b, h, home);
      }
    });
  }
}
