// Cluster mode in REAL browser tabs: three `timd serve --redis` nodes on one Redis (started here,
// on a free loopback port), and tabs of Chromium and Firefox, each tab on a different node, as
// behind a load balancer. The Web instance limit must hold across nodes: one tab over the limit
// kicks exactly the EARLIEST tab (KICKED_OUT multipleAccount, then SDK_NOT_READY), whatever node
// and browser it is on; the others stay online; the next login kicks the next-earliest.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { startRedis, startTimd, official, uniqueUser, SDKAPPID } from './timd.mjs';

const NODES = 3;
/** The tabs' engines, alternating tab by tab; `E2E_BROWSERS` may narrow them. */
const ENGINES = ['chrome', 'firefox'].filter((b) => BROWSERS.includes(b));

let redis;
const clusters = { default: [], two: [] }; // nodes of each cluster, as they start
const browsers = [];

before(async () => {
  redis = await startRedis();
  // The default limit (one Web instance) on database 0; a limit of 2 on database 1, so that
  // "earliest" is chosen among several online tabs. Each node is recorded as soon as it runs,
  // so `after` stops whatever started even if a later start fails.
  for (const [name, db, args] of [['default', 0, []], ['two', 1, ['--web-instances', '2']]]) {
    for (let i = 0; i < NODES; i++) clusters[name].push(await startTimd(['--redis', redis.url(db), ...args]));
  }
  for (const engine of ENGINES) {
    const b = await launch(engine);
    b.fresh = true; // its first window is still unused
    browsers.push(b);
  }
});

after(async () => {
  await Promise.allSettled(browsers.map((b) => b.quit()));
  await Promise.allSettled([...clusters.default, ...clusters.two].map((n) => n.stop()));
  await redis?.stop();
});

/** Opens the tab page served by `node` (its SDK connects to that node) in browser `b`. */
async function openTab(b, node) {
  const handle = b.fresh ? await b.handle() : await b.newTab();
  b.fresh = false;
  await b.switchTo(handle);
  await b.navigate(`${node.origin}/tab.html?sdkappid=${SDKAPPID}`);
  await waitFor(() => b.run(() => window.pageReady === true), { what: 'tab page' });
  return { b, handle, node, name: `${b.browser}@${node.port}` };
}

async function inTab(tab, fn, ...args) {
  await tab.b.switchTo(tab.handle);
  return tab.b.run(fn, ...args);
}

const kickTypes = (tab) => inTab(tab, () => kicks().map((e) => e.detail));

/** The admin's REST call `query_online_status` on `node`: how many Web instances of `user` are online. */
async function webOnline(node, user) {
  const q = new URLSearchParams({
    sdkappid: String(SDKAPPID), identifier: 'administrator', usersig: official.genSig('administrator', 600),
    random: String(Math.floor(Math.random() * 2 ** 31)), contenttype: 'json',
  });
  const res = await fetch(`${node.origin}/v4/openim/query_online_status?${q}`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ To_Account: [user], IsNeedDetail: 1 }),
  });
  const body = await res.json();
  assert.equal(body.ErrorCode, 0, JSON.stringify(body));
  const found = body.QueryResult.find((r) => r.To_Account === user);
  return found?.Status === 'Online' ? found.Detail.filter((d) => d.Platform === 'Web' && d.Status === 'Online').length : 0;
}

/** Asserts what every node sees: `online` tabs holding the user's Web slots, each on its own node. */
async function assertOnline(nodes, user, online) {
  // Every node answers the REST query the same (the decisions live in Redis, not in one node).
  for (const node of nodes) {
    await waitFor(async () => (await webOnline(node, user)) === online.length, { timeoutMs: 10000, what: `REST on ${node.port}` })
      .catch(async () => assert.fail(`query_online_status on node ${node.port}: ${await webOnline(node, user)} Web instances, want ${online.length}`));
  }
  // Each node holds exactly the sessions of its own online tabs: the tabs really are spread.
  for (const node of nodes) {
    const want = online.filter((t) => t.node === node).length;
    await waitFor(async () => (await node.metric('timd_sessions_online{platform="Web"}')) === want, { timeoutMs: 10000, what: 'metrics' })
      .catch(async () => assert.fail(`node ${node.port} holds ${await node.metric('timd_sessions_online{platform="Web"}')} Web sessions, want ${want}`));
  }
}

async function assertKicked(tab) {
  assert.deepEqual(await kickTypes(tab), ['multipleAccount'], `${tab.name}: exactly one KICKED_OUT multipleAccount`);
  // tim-js-sdk 2.27.6's order: KICKED_OUT, then SDK_NOT_READY; nothing after.
  await waitFor(() => inTab(tab, () => events.at(-1).name === 'sdkStateNotReady'), { what: `SDK_NOT_READY in ${tab.name}` });
  assert.deepEqual((await inTab(tab, () => events.map((e) => e.name))).slice(-2), ['kickedOut', 'sdkStateNotReady']);
  assert.equal(await inTab(tab, () => tim.isReady()), false, `${tab.name} is not ready`);
  assert.equal(await inTab(tab, () => tim.getLoginStatus()), 3, `${tab.name} is logged out`);
}

async function assertUsable(tab) {
  assert.deepEqual(await kickTypes(tab), [], `${tab.name} was not kicked`);
  assert.equal(await inTab(tab, () => tim.isReady()), true, `${tab.name} is ready`);
  assert.equal(await inTab(tab, () => tim.getLoginStatus()), 1, `${tab.name} is logged in`);
  assert.ok((await inTab(tab, () => events.map((e) => e.name))).includes('sdkStateReady'), `${tab.name} got SDK_READY`);
}

/**
 * `limit` tabs fill the slots; tab `limit` (one over) must kick tab 0 only, and tab `limit + 1`
 * then tab 1 only. Tab i is on node i mod 3 and in engine i mod 2, so every kick crosses nodes.
 */
async function scenario(t, nodes, limit) {
  const user = uniqueUser('cluster');
  const sig = official.genSig(user, 600);
  const tabs = [];
  const latencies = [];
  const kicksOn = async (node) => node.metric('timd_kicks_total{type="multipleAccount"}');
  for (let i = 0; i < limit + 2; i++) {
    const tab = await openTab(browsers[i % browsers.length], nodes[i % nodes.length]);
    const victim = i >= limit ? tabs[i - limit] : undefined;
    const victimKicksBefore = victim && await kicksOn(victim.node);
    const { at, data } = await inTab(tab, (u, s) => doLogin(u, s), user, sig);
    assert.equal(data.actionStatus, 'OK', `login in ${tab.name}: ${JSON.stringify(data)}`);
    tabs.push(tab);
    if (victim) {
      await waitFor(async () => (await kickTypes(victim)).length > 0, { what: `${victim.name} kicked by the login in ${tab.name}` });
      latencies.push((await inTab(victim, () => kicks()[0].at)) - at);
      // Its own node delivered the kick (the kicker is on another node).
      assert.notEqual(victim.node, tab.node);
      assert.equal(await kicksOn(victim.node), victimKicksBefore + 1, `node ${victim.node.port} kicked ${victim.name}`);
    }
    // Nothing else happened (another tab kicked, a second kick, a kick loop): every decision
    // was taken in Redis before the login answered, and the REST query reads Redis, so a wrong
    // kick shows there even while its message to the victim's node is still on its way; then a
    // round trip with each online tab's node brings in whatever that node sent the tab.
    const kicked = Math.max(0, i + 1 - limit);
    await assertOnline(nodes, user, tabs.slice(kicked));
    for (const u of tabs.slice(kicked)) assert.equal(await inTab(u, () => roundTrip()), true, `${u.name}: a round trip with its node`);
    for (const k of tabs.slice(0, kicked)) await assertKicked(k);
    for (const u of tabs.slice(kicked)) await assertUsable(u);
  }
  t.diagnostic(`limit ${limit}: cross-node kick delivery (login call in one browser to KICKED_OUT in another): ${latencies.map((l) => `${l.toFixed(1)} ms`).join(', ')}`);

  // The survivors still round-trip with their nodes: each logout is answered, and then no
  // node sees the user online.
  for (const tab of tabs.slice(2)) {
    await inTab(tab, () => tim.logout());
    assert.equal(await inTab(tab, () => tim.getLoginStatus()), 3, `${tab.name} logged out`);
  }
  await assertOnline(nodes, user, []);
}

test('cluster: tabs on three nodes obey the default Web limit (1); the earliest tab is kicked, then the next', { timeout: 120000, skip: ENGINES.length === 0 && 'E2E_BROWSERS has neither chrome nor firefox' }, async (t) => {
  await scenario(t, clusters.default, 1);
});

test('cluster: tabs on three nodes with Online Web Instances = 2; the earliest of the online tabs is kicked, then the next', { timeout: 120000, skip: ENGINES.length === 0 && 'E2E_BROWSERS has neither chrome nor firefox' }, async (t) => {
  await scenario(t, clusters.two, 2);
});
