// Multi-instance behaviour in REAL browser tabs (Chromium, Firefox and WebKit through WebDriver): the
// seed's scenario with Online Web Instances = 2, logout and reload leaving the sibling alone,
// two tabs fighting over one slot, and the kick delivery latency between tabs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { startTimd, official, uniqueUser, root, SDKAPPID } from './timd.mjs';
import { tabUrl, openTab, inTab, kickTypes, settled } from './tab-page.mjs';

let two; // --web-instances 2 --login-policy single
let one; // the defaults: one Web instance

before(async () => {
  [two, one] = await Promise.all([
    startTimd(['--web-instances', '2', '--login-policy', 'single']),
    startTimd([]),
  ]);
});

after(async () => {
  await Promise.all([two?.stop(), one?.stop()]);
});

for (const browser of BROWSERS) {
  test(`${browser}: the seed scenario in three tabs (Online Web Instances = 2)`, { timeout: 120000 }, async () => {
    const b = await launch(browser);
    try {
      const user = uniqueUser('tabs');
      const url = tabUrl(two, user, official.genSig(user, 600));
      const a1 = await openTab(b, url, { first: true });
      const a2 = await openTab(b, url);
      const a3 = await openTab(b, url);
      await b.switchTo(a1);
      await waitFor(() => b.run(() => kicks().length > 0), { what: 'a1 kicked' });
      assert.deepEqual(await kickTypes(b, a1), ['multipleAccount']);
      // tim-js-sdk 2.27.6's order: KICKED_OUT, then SDK_NOT_READY; nothing after.
      await waitFor(() => inTab(b, a1, () => events.at(-1).name === 'sdkStateNotReady'), { what: 'SDK_NOT_READY after the kick' });
      assert.deepEqual((await inTab(b, a1, () => events.map((e) => e.name))).slice(-2), ['kickedOut', 'sdkStateNotReady']);
      assert.equal(await inTab(b, a1, () => tim.isReady()), false);
      assert.equal(await inTab(b, a1, () => tim.getLoginStatus()), 3);
      assert.equal(await inTab(b, a2, () => tim.getLoginStatus()), 1);
      for (const h of [a2, a3]) {
        assert.equal(await inTab(b, h, () => tim.isReady()), true);
        assert.deepEqual(await kickTypes(b, h), []);
      }
      // Three tabs, three distinct instance ids.
      const ids = new Set();
      for (const h of [a1, a2, a3]) (await inTab(b, h, () => instanceIds())).forEach((id) => ids.add(id));
      assert.equal(ids.size, 3);
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: logout and reload of one tab leave its sibling alone`, { timeout: 120000 }, async () => {
    const b = await launch(browser);
    try {
      const user = uniqueUser('reload');
      const url = tabUrl(two, user, official.genSig(user, 600));
      const a1 = await openTab(b, url, { first: true });
      const a2 = await openTab(b, url);
      await inTab(b, a1, () => tim.logout());
      await settled(b, a2, 'a2 after the logout of a1');
      assert.equal(await inTab(b, a2, () => tim.isReady()), true);
      assert.deepEqual(await inTab(b, a2, () => events.map((e) => e.name)), ['netStateChange', 'netStateChange', 'sdkStateReady']);
      await inTab(b, a1, (u, s) => doLogin(u, s), user, official.genSig(user, 600));

      // Reload a2: same instance id, logs in again, a1 untouched.
      const before = await inTab(b, a2, () => instanceIds());
      await b.navigate(url);
      await waitFor(() => b.run(() => window.pageReady === true), { what: 'reloaded tab' });
      assert.equal((await b.run(() => window.autoLogin)).actionStatus, 'OK');
      assert.deepEqual(await b.run(() => instanceIds()), before, 'a reload keeps the instance id');
      await settled(b, a1, 'a1 after the reload of a2');
      assert.deepEqual(await kickTypes(b, a1), [], 'the sibling was not kicked');
      assert.equal(await inTab(b, a1, () => tim.isReady()), true);
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: a duplicated tab (same sessionStorage) takes its own instance id`, { timeout: 120000 }, async () => {
    const b = await launch(browser);
    try {
      const user = uniqueUser('dup');
      const sig = official.genSig(user, 600);
      const a = await openTab(b, tabUrl(two, user, sig), { first: true });
      const storage = await inTab(b, a, () => instanceStorage());
      assert.equal(Object.keys(storage).length, 1);
      // The duplicate starts with the original's sessionStorage, as the browser copies it.
      const d = await openTab(b, tabUrl(two, user, sig, storage));
      const [idA] = Object.values(storage);
      const idD = await inTab(b, d, () => instanceIds());
      assert.equal(idD.length, 1);
      assert.notEqual(idD[0], idA, 'the duplicate took a new id');
      // Two instances (limit 2): both online, neither replaced the other.
      for (const h of [a, d]) {
        await settled(b, h, h === a ? 'the original' : 'the duplicate');
        assert.equal(await inTab(b, h, () => tim.isReady()), true);
        assert.deepEqual(await kickTypes(b, h), []);
      }
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: a native Android login kicks the web tab under the single policy`, { timeout: 60000 }, async () => {
    const b = await launch(browser);
    let android;
    try {
      const user = uniqueUser('android');
      const web = await openTab(b, tabUrl(two, user, official.genSig(user, 600)), { first: true });
      android = spawn(process.env.TIMD_BIN || path.join(root, 'target/debug/timd'), ['client',
        '--url', two.origin.replace('http', 'ws'), '--sdkappid', String(SDKAPPID), '--platform', 'Android',
        '--user', user, '--usersig', official.genSig(user, 600)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      android.stdout.on('data', (d) => { out += d; });
      await waitFor(async () => out.includes('sdkStateReady'), { what: 'the Android client online' });
      await b.switchTo(web);
      await waitFor(() => b.run(() => kicks().length > 0), { what: 'web tab kicked' });
      assert.deepEqual(await kickTypes(b, web), ['multipleDevice']);
      assert.ok(!out.includes('kickedOut'), out);
    } finally {
      android?.kill('SIGINT');
      await b.quit();
    }
  });

  test(`${browser}: two tabs fighting over one slot for 10 s end with exactly one online`, { timeout: 120000 }, async (t) => {
    const b = await launch(browser);
    try {
      const user = uniqueUser('fight');
      const sig = official.genSig(user, 600);
      const url = tabUrl(one, user, sig);
      const x = await openTab(b, url, { first: true });
      const y = await openTab(b, url);
      const until = Date.now() + 10_000;
      for (const h of [x, y]) await inTab(b, h, (u, s, end) => fight(u, s, end), user, sig, until);
      // Start the fight: x logs in again, kicking y, which logs in again, ...
      await inTab(b, x, (u, s) => doLogin(u, s), user, sig);
      await new Promise((r) => setTimeout(r, until - Date.now() + 3_000));
      const ready = [await inTab(b, x, () => tim.isReady()), await inTab(b, y, () => tim.isReady())];
      const kicks = (await kickTypes(b, x)).length + (await kickTypes(b, y)).length;
      const logins = (await inTab(b, x, () => fightLogins)) + (await inTab(b, y, () => fightLogins));
      t.diagnostic(`${browser}: ${kicks} kicks and ${logins} re-logins in 10 s; online at the end: ${ready}`);
      assert.equal(ready.filter(Boolean).length, 1, `exactly one online: ${ready}`);
      // Every kick was caused by one login of the other tab: no kick without a login (the two
      // logins outside the fight: y's page load, and x's opening move).
      assert.ok(kicks <= logins + 2, `${kicks} kicks for ${logins} logins`);
      assert.ok(kicks >= 2, 'they did fight');
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: kick delivery between tabs, 120 kicks`, { timeout: 180000 }, async (t) => {
    const b = await launch(browser);
    try {
      const user = uniqueUser('latency');
      const sig = official.genSig(user, 600);
      const url = tabUrl(one, user, sig);
      const tabs = [await openTab(b, url, { first: true }), await openTab(b, url)];
      await waitFor(async () => (await kickTypes(b, tabs[0])).length === 1, { what: 'first kick' });
      const latencies = [];
      for (let i = 0; i < 120; i++) {
        const kicker = tabs[i % 2];
        const victim = tabs[(i + 1) % 2];
        const seen = (await kickTypes(b, victim)).length;
        const { at } = await inTab(b, kicker, (u, s) => doLogin(u, s), user, sig);
        await b.switchTo(victim);
        await waitFor(() => b.run((n) => kicks().length > n, seen), { what: `kick ${i}` });
        const kickedAt = await b.run((n) => kicks()[n].at, seen);
        latencies.push(kickedAt - at);
      }
      // One kick per login, none else: the first tab got the opening kick and 60, the second
      // 60, all multipleAccount (each within this loop's wait); the last kicker is online.
      await settled(b, tabs[1], 'the last kicker');
      assert.deepEqual(await kickTypes(b, tabs[0]), Array(61).fill('multipleAccount'));
      assert.deepEqual(await kickTypes(b, tabs[1]), Array(60).fill('multipleAccount'));
      assert.equal(await inTab(b, tabs[1], () => tim.isReady()), true);
      latencies.sort((p, q) => p - q);
      const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
      t.diagnostic(`${browser}: kick delivery over ${latencies.length} kicks: p50 ${pct(0.5).toFixed(2)} ms, p99 ${pct(0.99).toFixed(2)} ms, max ${latencies.at(-1).toFixed(2)} ms (from the login call in one tab to KICKED_OUT in the other)`);
    } finally {
      await b.quit();
    }
  });
}
