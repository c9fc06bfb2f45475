// The operator's console (/console) used as an operator would, in real Chromium, Firefox and
// WebKit: a wrong and an expired admin UserSig are refused with their codes; signing in with a
// good one; the Web limit changed from the console (ApplyNow checked) kicks the earliest tab at
// once and decides the next tab's login; the user looked up shows its instances; a REST kick
// from the console (after its confirmation) gives the tab KICKED_OUT REST_API_Kick; the live
// feed and the chart show the logins and kicks. Then the same console against three
// `timd --redis` nodes on a real redis-server, served by a node that holds none of the tabs.
// Screenshots go to $TEST_ARTIFACTS_DIR (default target/test-artifacts/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launch, freePort, waitFor, BROWSERS } from './webdriver.mjs';
import { startTimd, startRedis, official, uniqueUser, SDKAPPID, KEY, TLSSigAPIv2, root, track, exited } from './timd.mjs';
import { tabUrl, openTab, inTab, kickTypes, settled } from './tab-page.mjs';

const artifacts = path.resolve(root, process.env.TEST_ARTIFACTS_DIR || 'target/test-artifacts');
let timd;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  timd = await startTimd([]);
});

after(async () => {
  await timd?.stop();
});

const adminSig = (expire = 600) => official.genSig('administrator', expire);
/** An admin UserSig issued two hours ago, valid for one: expired (the official generator
 * reads the time from Date.now). */
function expiredAdminSig() {
  const realNow = Date.now;
  Date.now = () => realNow() - 7200 * 1000;
  try { return official.genSig('administrator', 3600); } finally { Date.now = realNow; }
}

async function screenshot(b, name) {
  // Two frames: the last DOM changes are painted (WebKit's screenshot shows the last paint).
  await b.run(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const file = path.join(artifacts, name);
  writeFileSync(file, await b.screenshot());
  console.log(`screenshot: ${file}`);
}

/** A real (trusted) click through WebDriver. */
async function click(b, css) {
  const found = await b.cmd('POST', '/element', { using: 'css selector', value: css });
  await b.cmd('POST', `/element/${Object.values(found)[0]}/click`, {});
}

/** Opens the console of `server` in the current window of `b` (a new tab unless `first`). */
async function openConsole(b, server, { first = true } = {}) {
  const handle = first ? await b.handle() : await b.newTab();
  await b.switchTo(handle);
  await b.navigate(`${server.origin}/console`);
  await waitFor(() => b.run(() => window.consoleReady === true), { what: 'console page' });
  return handle;
}

/** Fills the sign-in form and submits it. */
async function signIn(b, usersig, { admin = 'administrator', sdkappid = String(SDKAPPID) } = {}) {
  await b.run((a, s, u) => {
    document.getElementById('signin-error').hidden = true;
    document.getElementById('in-sdkappid').value = a;
    document.getElementById('in-admin').value = s;
    document.getElementById('in-usersig').value = u;
  }, sdkappid, admin, usersig);
  await click(b, '#signin-button');
}

const signInError = (b) => waitFor(() => b.run(() => {
  const box = document.getElementById('signin-error');
  return !box.hidden && { code: Number(box.dataset.code), text: box.textContent };
}), { what: 'the sign-in error' });

const signedIn = (b) => waitFor(() => b.run(() => !document.getElementById('settings').hidden
  && document.getElementById('settings').dataset.version !== undefined), { what: 'signed in' });

/** Sets the Web limit from the console's form (with ApplyNow as given); resolves with the new version. */
async function setWebLimit(b, web, applyNow) {
  const before = await b.run(() => Number(document.getElementById('settings').dataset.version));
  await b.run((w, now) => {
    document.getElementById('set-web').value = String(w);
    document.getElementById('set-apply-now').checked = now;
  }, web, applyNow);
  await click(b, '#set-save');
  return waitFor(async () => {
    const v = await b.run(() => Number(document.getElementById('set-result').dataset.version || 0));
    return v > before && v;
  }, { what: `the Web limit ${web} saved` });
}

/** The looked-up user's instance rows: { instance, platform, status, node } each. */
const instanceRows = (b) => b.run(() => [...document.querySelectorAll('#instances tbody tr')].map((r) => ({ ...r.dataset })));

async function lookUp(b, user) {
  await b.run((u) => { document.getElementById('lookup-user').value = u; }, user);
  await click(b, '#lookup-button');
  await waitFor(() => b.run((u) => document.getElementById('lookup-name').textContent === u
    && !document.getElementById('lookup').hidden, user), { what: `${user} looked up` });
}

/** REST-kicks the looked-up user: the button, then the confirmation's Kick. */
async function kickFromConsole(b) {
  await click(b, '#kick');
  await waitFor(() => b.run(() => document.getElementById('confirm').open), { what: 'the confirmation' });
  await click(b, '#confirm-kick');
}

/** The feed's entries of `user`: "Kind Reason" each, oldest first. */
const feedOf = (b, user) => b.run((u) => [...document.querySelectorAll('#feed li')]
  .filter((li) => li.dataset.user === u).map((li) => `${li.dataset.kind} ${li.dataset.reason}`).reverse(), user);

const chartTotals = (b) => b.run(() => {
  const c = document.getElementById('chart');
  return { logins: Number(c.dataset.logins || 0), kicks: Number(c.dataset.kicks || 0), bars: c.querySelectorAll('rect').length };
});

for (const browser of BROWSERS) {
  test(`console in ${browser}: sign-in refusals, settings obeyed by new tabs, a user looked up and kicked, the feed and the chart`, { timeout: 180000 }, async () => {
    const b = await launch(browser);
    try {
      await b.cmd('POST', '/window/rect', { width: 1280, height: 1400 });
      const consoleTab = await openConsole(b, timd);
      // The SDKAppID is suggested; a UserSig signed with another key is refused with its code.
      assert.equal(await b.run(() => document.getElementById('in-sdkappid').value), String(SDKAPPID));
      await signIn(b, new TLSSigAPIv2.Api(SDKAPPID, `${KEY}-not`).genSig('administrator', 600));
      let error = await signInError(b);
      assert.equal(error.code, 70009, error.text);
      assert.match(error.text, /70009.*another key/);
      await screenshot(b, `console-${browser}-bad-usersig.png`);
      // An expired one, and a UserSig of a user who is not an admin.
      await signIn(b, expiredAdminSig());
      error = await signInError(b);
      assert.equal(error.code, 70001, error.text);
      assert.match(error.text, /expired/);
      await signIn(b, official.genSig('alice', 600), { admin: 'alice' });
      assert.equal((await signInError(b)).code, 70403);
      assert.equal(await b.run(() => sessionStorage.getItem('timd-console/auth')), null, 'nothing kept after a refusal');

      await signIn(b, adminSig());
      await signedIn(b);
      const kept = JSON.parse(await b.run(() => sessionStorage.getItem('timd-console/auth')));
      assert.equal(kept.admin, 'administrator');
      assert.equal(await b.run(() => localStorage.length), 0, 'the UserSig is kept in sessionStorage only');

      // Web limit 2 from the console: two tabs of one user both stay.
      await setWebLimit(b, 2, false);
      const user = uniqueUser(`console_${browser}`);
      const url = tabUrl(timd, user, official.genSig(user, 600));
      const t1 = await openTab(b, url);
      const t2 = await openTab(b, url);
      await settled(b, t1, 't1');
      assert.deepEqual(await kickTypes(b, t1), []);

      // The console sees both, each online, earliest first.
      await b.switchTo(consoleTab);
      await lookUp(b, user);
      const rows = await waitFor(async () => { const r = await instanceRows(b); return r.length === 2 && r; }, { what: 'two instances' });
      assert.deepEqual(rows.map((r) => [r.platform, r.status]), [['Web', 'Online'], ['Web', 'Online']]);
      assert.equal(rows[0].instance, (await inTab(b, t1, () => instanceIds()))[0]);
      await b.switchTo(consoleTab);
      await waitFor(() => b.run(() => Number(document.querySelector('#platforms tr[data-platform="Web"]')?.dataset.online) >= 2), { what: 'Web online ≥ 2' });

      // Web limit 1, applied now: the earliest tab is kicked at once, the other stays.
      const version = await setWebLimit(b, 1, true);
      assert.equal(await b.run(() => document.getElementById('set-apply-now').checked), false, 'Apply now is chosen anew each time');
      await waitFor(async () => (await kickTypes(b, t1)).length > 0, { what: 't1 kicked by the ApplyNow change' });
      assert.deepEqual(await kickTypes(b, t1), ['multipleAccount']);
      await settled(b, t2, 't2');
      assert.deepEqual(await kickTypes(b, t2), []);
      // The history says who changed what.
      await b.switchTo(consoleTab);
      const latest = await waitFor(() => b.run((v) => {
        const row = document.querySelector(`#history tr[data-version="${v}"]`);
        return row && { admin: row.dataset.admin, change: row.querySelector('.change').textContent };
      }, version), { what: 'the history row' });
      assert.deepEqual(latest, { admin: 'administrator', change: 'Web instances 2 → 1' });

      // A new tab obeys the new limit: it kicks t2.
      const t3 = await openTab(b, url);
      await waitFor(async () => (await kickTypes(b, t2)).length > 0, { what: 't2 kicked by t3' });
      assert.deepEqual(await kickTypes(b, t2), ['multipleAccount']);
      const t3Instance = (await inTab(b, t3, () => instanceIds()))[0];

      // Looked up: t3 alone; kicked from the console after the confirmation.
      await b.switchTo(consoleTab);
      await waitFor(async () => { const r = await instanceRows(b); return r.length === 1 && r[0].instance === t3Instance; }, { what: 't3 alone in the lookup' });
      await kickFromConsole(b);
      await waitFor(async () => (await kickTypes(b, t3)).length > 0, { what: 't3 kicked from the console' });
      assert.deepEqual(await kickTypes(b, t3), ['REST_API_Kick']);
      assert.equal(await inTab(b, t3, () => tim.isReady()), false);

      // The feed and the chart show it all.
      await b.switchTo(consoleTab);
      const want = ['Login Register', 'Login Register', 'Kicked multipleAccount', 'Login Register', 'Kicked multipleAccount', 'Kicked REST_API_Kick'];
      await waitFor(async () => (await feedOf(b, user)).filter((e) => !e.startsWith('Disconnect')).length >= want.length, { what: 'the feed' })
        .catch(async () => assert.fail(`feed: ${JSON.stringify(await feedOf(b, user))}`));
      assert.deepEqual(sorted((await feedOf(b, user)).filter((e) => !e.startsWith('Disconnect'))), sorted(want));
      const totals = await waitFor(async () => { const t = await chartTotals(b); return t.logins >= 3 && t.kicks >= 3 && t; }, { what: 'the chart' });
      assert.ok(totals.bars >= 2, JSON.stringify(totals));
      await waitFor(async () => (await instanceRows(b)).length === 0, { what: 'no instance left' });
      assert.ok((await b.run(() => document.querySelectorAll('#user-kicks li[data-reason="REST_API_Kick"]').length)) >= 1);
      await screenshot(b, `console-${browser}-after-kick.png`);

      // Signing out forgets the UserSig.
      await click(b, '#signout');
      assert.equal(await b.run(() => sessionStorage.getItem('timd-console/auth')), null);
      assert.equal(await b.run(() => document.getElementById('signin').hidden), false);
    } finally {
      await b.quit();
    }
  });
}

/** The id of cluster node `node` (what its online_summary says answered). */
async function nodeId(node) {
  const q = new URLSearchParams({ sdkappid: String(SDKAPPID), identifier: 'administrator', usersig: adminSig(), random: '7', contenttype: 'json' });
  const answer = await (await fetch(`${node.origin}/v4/timd/online_summary?${q}`, { method: 'POST', body: '{}' })).json();
  assert.equal(answer.ErrorCode, 0, JSON.stringify(answer));
  return answer.Node;
}

/** Sorted: events seen by different sockets (a login and the kick it causes) race to the feed. */
const sorted = (list) => [...list].sort();

test('console against a 3-node cluster: any node serves it, the numbers and the feed are the cluster\'s', { timeout: 180000 }, async () => {
  const engine = BROWSERS.includes('chrome') ? 'chrome' : BROWSERS[0];
  const redis = await startRedis();
  const nodes = [];
  let b;
  try {
    for (let i = 0; i < 3; i++) nodes.push(await startTimd(['--redis', redis.url()]));
    b = await launch(engine);
    await b.cmd('POST', '/window/rect', { width: 1280, height: 1400 });
    // The console on node 0; the tabs on nodes 1 and 2 (the default Web limit: 1).
    const consoleTab = await openConsole(b, nodes[0]);
    await signIn(b, adminSig());
    await signedIn(b);
    const user = uniqueUser('console_cluster');
    const sig = official.genSig(user, 600);
    const t1 = await openTab(b, tabUrl(nodes[1], user, sig));
    const t2 = await openTab(b, tabUrl(nodes[2], user, sig));
    await waitFor(async () => (await kickTypes(b, t1)).length > 0, { what: 't1 (node 1) kicked by t2 (node 2)' });

    await b.switchTo(consoleTab);
    await lookUp(b, user);
    const [row] = await waitFor(async () => { const r = await instanceRows(b); return r.length === 1 && r; }, { what: 't2 in the lookup' });
    assert.equal(row.status, 'Online');
    assert.equal(row.node, await nodeId(nodes[2]), 'the node holding it is shown');
    assert.notEqual(row.node, await nodeId(nodes[0]));
    // The node table: node 2 holds the one Web session; node 0 (serving the console) none.
    await waitFor(() => b.run((n) => Number(document.querySelector(`#nodes tr[data-node="${n}"]`)?.dataset.online) === 1
      && Number(document.getElementById('online').dataset.online) >= 1, row.node), { what: 'the node table' });
    // The feed on node 0 has the events of nodes 1 and 2.
    await waitFor(async () => (await feedOf(b, user)).includes('Kicked multipleAccount'), { what: 'the cross-node kick in the feed' })
      .catch(async () => assert.fail(`feed: ${JSON.stringify(await feedOf(b, user))}`));
    await kickFromConsole(b);
    await waitFor(async () => (await kickTypes(b, t2)).length > 0, { what: 't2 kicked from the console on node 0' });
    assert.deepEqual(await kickTypes(b, t2), ['REST_API_Kick']);
    await b.switchTo(consoleTab);
    await waitFor(async () => (await feedOf(b, user)).filter((e) => !e.startsWith('Disconnect')).sort().join() === sorted(['Login Register', 'Login Register', 'Kicked multipleAccount', 'Kicked REST_API_Kick']).join(), { what: 'the feed' })
      .catch(async () => assert.fail(`feed: ${JSON.stringify(await feedOf(b, user))}`));
    // The chart's counts come from Redis: both nodes' logins and kicks.
    await waitFor(async () => { const t = await chartTotals(b); return t.logins >= 2 && t.kicks >= 2; }, { what: 'the cluster\'s counts in the chart', timeoutMs: 20000 });
    await screenshot(b, `console-cluster-${engine}.png`);
  } finally {
    await b?.quit();
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await redis.stop();
  }
});

test('console in demo mode (the public demo key): "Fill in" gets an admin UserSig and signs in', { timeout: 60000 }, async () => {
  const engine = BROWSERS.includes('chrome') ? 'chrome' : BROWSERS[0];
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tim-console-demo-'));
  const origin = `http://127.0.0.1:${port}`;
  const child = track(spawn(process.env.TIMD_BIN || path.join(root, 'target/debug/timd'),
    ['serve', '--demo', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } }));
  let b;
  try {
    await waitFor(async () => (await fetch(`${origin}/healthz`)).ok, { what: 'timd --demo' });
    b = await launch(engine);
    await openConsole(b, { origin });
    await click(b, '#demo-fill');
    await waitFor(() => b.run(() => document.getElementById('in-usersig').value.length > 50), { what: 'the UserSig filled in' });
    await click(b, '#signin-button');
    await signedIn(b);
    assert.equal(await b.run(() => document.getElementById('who-admin').textContent), 'administrator');
  } finally {
    await b?.quit();
    child.kill('SIGTERM');
    await exited(child);
    rmSync(dataDir, { recursive: true, force: true });
  }
});
