// wss:// the way it is deployed: the shipped deploy/nginx and deploy/haproxy templates, filled
// in and run, terminate TLS (a test CA and certificate made here with openssl) in front of one
// production-mode timd and in front of 3 timd nodes on one Redis. Real browsers load an
// https:// page and the package through the proxy, log in over wss://, kick each other, and
// reconnect across a timd restart; a forged X-Forwarded-For must not change the address timd
// counts; the systemd unit passes `systemd-analyze verify`.
//
// How the browsers trust the test certificate (docs/deploy.md):
// - Chromium: `--ignore-certificate-errors-spki-list` with the SHA-256 of the server key
//   (only this key is trusted, not any certificate);
// - Firefox and WebKitGTK: the WebDriver capability `acceptInsecureCerts` (geckodriver and
//   WebKitWebDriver both support it; neither has a command-line way to add a CA, and a
//   Firefox enterprise policy would have to be installed next to the system's firefox-esr).
// Node's own requests verify the chain against the test CA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { root, startRedis, official, uniqueUser, SDKAPPID } from './timd.mjs';
import { makeCerts, startNode, startProxy, startStatic, get, rawSocket } from './tls.mjs';

const WWW = path.join(root, 'tests/e2e/pages');
const PKG = path.join(root, 'pkg');
const HEARTBEAT_MS = 25000; // timd's default --heartbeat-ms

let certs;
let redis;
let app;
const nodes = { single: [], cluster: [] };
const proxies = []; // { kind, topology, origin, port }
const browsers = [];
const started = []; // everything to stop

before(async () => {
  certs = makeCerts();
  redis = await startRedis();
  started.push(redis);
  app = await startStatic(WWW, PKG);
  started.push(app);
  nodes.single.push(await startNode());
  for (let i = 0; i < 3; i++) nodes.cluster.push(await startNode(['--redis', redis.url(0)]));
  started.push(...nodes.single, ...nodes.cluster);
  for (const kind of ['nginx', 'haproxy']) {
    for (const topology of ['single', 'cluster']) {
      const p = await startProxy(kind, { certs, nodes: nodes[topology], app, wwwRoot: WWW, pkgDir: PKG });
      started.unshift(p); // proxies stop first
      proxies.push({ ...p, topology });
    }
  }
  for (const engine of BROWSERS) {
    const options = engine === 'chrome'
      ? { chromeArgs: [`--ignore-certificate-errors-spki-list=${certs.spki}`] }
      : { acceptInsecureCerts: true };
    const b = await launch(engine, options);
    b.fresh = true;
    browsers.push(b);
  }
});

after(async () => {
  await Promise.allSettled(browsers.map((b) => b.quit()));
  for (const s of started) await s.stop().catch(() => {});
  certs?.remove();
});

test('systemd: deploy/timd.service passes systemd-analyze verify', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tim-unit-'));
  try {
    // The unit names /usr/local/bin/timd; verify needs ExecStart's binary to exist: the one built.
    const unit = readFileSync(path.join(root, 'deploy/timd.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/timd serve$/m);
    writeFileSync(path.join(dir, 'timd.service'), unit.replace(/^ExecStart=\/usr\/local\/bin\/timd/m, `ExecStart=${path.join(root, 'target/debug/timd')}`));
    const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'timd.service')], { encoding: 'utf8' });
    assert.equal(r.error, undefined, String(r.error));
    // Unknown or malformed settings are only warnings: any output fails too.
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'systemd-analyze verify printed something');
    assert.equal(r.status, 0);
    for (const line of ['LoadCredential=timd-key:/etc/timd/key', 'Environment=TIMD_KEY_FILE=%d/timd-key',
      'StateDirectory=timd', 'Restart=on-failure', 'Environment=TIMD_TRUSTED_PROXIES=127.0.0.1']) {
      assert.ok(unit.split('\n').includes(line), line);
    }
    assert.match(unit, /^LimitNOFILE=\d+$/m);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('templates: the WebSocket idle timeouts exceed twice the heartbeat', () => {
  const nginx = readFileSync(path.join(root, 'deploy/nginx/timd.conf'), 'utf8');
  const ws = nginx.slice(nginx.indexOf('location = /ws {'));
  for (const d of ['proxy_read_timeout', 'proxy_send_timeout']) {
    const s = Number(ws.match(new RegExp(`${d} (\\d+)s;`))[1]);
    assert.ok(s * 1000 > 2 * HEARTBEAT_MS, `nginx ${d} ${s}s`);
  }
  const haproxy = readFileSync(path.join(root, 'deploy/haproxy/timd.cfg'), 'utf8');
  const tunnel = Number(haproxy.match(/timeout tunnel (\d+)s/)[1]);
  assert.ok(tunnel * 1000 > 2 * HEARTBEAT_MS, `haproxy timeout tunnel ${tunnel}s`);
});

for (const kind of ['nginx', 'haproxy']) {
  test(`${kind}: a forged X-Forwarded-For does not change the address timd counts`, async () => {
    // A node of its own allowing 2 sockets per client address; every socket below comes from
    // 127.0.0.1 through the proxy, each claiming another address.
    const node = await startNode(['--max-connections-per-addr', '2']);
    const proxy = await startProxy(kind, { certs, nodes: [node], app, wwwRoot: WWW, pkgDir: PKG });
    const sockets = [];
    try {
      for (const forged of ['203.0.113.1', '203.0.113.2']) {
        const s = await rawSocket(proxy.port, certs.ca, { 'X-Forwarded-For': forged });
        sockets.push(s.socket);
        assert.equal(s.pong, true, `socket claiming ${forged} admitted`);
      }
      // Were the forged header believed, this would be a third client with one socket.
      const third = await rawSocket(proxy.port, certs.ca, { 'X-Forwarded-For': '203.0.113.3, 198.51.100.7' });
      sockets.push(third.socket);
      assert.equal(third.close, 4008, 'the third socket from 127.0.0.1 is refused (too many connections from this address)');
      // timd's info line for it (written before the close frame; its pipe is read apart).
      const refusedLines = () => node.log().split('\n').filter((l) => l.includes('connection refused'));
      await waitFor(async () => refusedLines().length > 0, { what: 'the "connection refused" log line' });
      const refused = refusedLines();
      assert.equal(refused.length, 1, refused.join('\n'));
      assert.match(refused[0], /client=127\.0\.0\.1 /);
      assert.doesNotMatch(node.log(), /203\.0\.113|198\.51\.100/);
    } finally {
      sockets.forEach((s) => s.destroy());
      await proxy.stop();
      await node.stop();
    }
  });
}

/** The admin's REST call through `proxy`: how many Web instances of `user` are online. */
async function webOnline(proxy, user) {
  const q = new URLSearchParams({
    sdkappid: String(SDKAPPID), identifier: 'administrator', usersig: official.genSig('administrator', 600),
    random: String(Math.floor(Math.random() * 2 ** 31)), contenttype: 'json',
  });
  const res = await get(proxy.origin, `/v4/openim/query_online_status?${q}`, certs.ca,
    { method: 'POST', body: JSON.stringify({ To_Account: [user], IsNeedDetail: 1 }) });
  const body = JSON.parse(res.text);
  assert.equal(body.ErrorCode, 0, res.text);
  const found = body.QueryResult.find((r) => r.To_Account === user);
  return found?.Status === 'Online' ? found.Detail.filter((d) => d.Platform === 'Web' && d.Status === 'Online').length : 0;
}

async function openTab(b, url) {
  const handle = b.fresh ? await b.handle() : await b.newTab();
  b.fresh = false;
  await b.switchTo(handle);
  await b.navigate(url);
  await waitFor(() => b.run(() => window.pageReady === true), { what: `tab page ${url}` });
  return handle;
}

async function inTab(b, handle, fn, ...args) {
  await b.switchTo(handle);
  return b.run(fn, ...args);
}

for (const kind of ['nginx', 'haproxy']) {
  for (const topology of ['single', 'cluster']) {
    const what = topology === 'single' ? 'one timd' : '3 timd nodes on Redis';
    test(`${kind} in front of ${what}: an https page logs in over wss, a second tab kicks the first, a timd restart is survived`, { timeout: 120000 }, async (t) => {
      const proxy = proxies.find((p) => p.kind === kind && p.topology === topology);
      // The proxy is reachable only with the test CA: the certificate chain is real.
      await assert.rejects(get(proxy.origin, '/healthz', undefined), /self-signed|unable to verify|certificate/i);
      assert.equal((await get(proxy.origin, '/metrics', certs.ca)).status, 404, '/metrics is not exposed through the proxy');
      // The operator's console is served by timd through the proxy (docs/console.md).
      for (const path of ['/console', '/console/console.js']) {
        const page = await get(proxy.origin, path, certs.ca);
        assert.equal(page.status, 200, `${path} through ${kind}`);
        assert.match(page.text, /timd console|timd\/console|sessionStorage/, path);
      }
      for (const b of browsers) {
        const user = uniqueUser(`tls${kind[0]}${topology[0]}${b.browser[0]}`);
        const sig = official.genSig(user, 600);
        const url = `${proxy.origin}/tab.html?sdkappid=${SDKAPPID}`;
        const tabs = [];
        for (let i = 0; i < 2; i++) {
          const tab = await openTab(b, url);
          const { data } = await inTab(b, tab, (u, s) => doLogin(u, s), user, sig);
          assert.equal(data.actionStatus, 'OK', `${b.browser}: login in tab ${i}: ${JSON.stringify(data)}`);
          assert.match(await inTab(b, tab, () => sockets.at(-1).url), new RegExp(`^wss://localhost:${proxy.port}/ws`));
          tabs.push(tab);
        }
        // The second login kicked the first tab (one Web instance by default).
        await waitFor(async () => (await inTab(b, tabs[0], () => kicks().map((e) => e.detail))).length > 0, { what: `${b.browser}: tab 0 kicked` });
        assert.deepEqual(await inTab(b, tabs[0], () => kicks().map((e) => e.detail)), ['multipleAccount']);
        assert.equal(await inTab(b, tabs[1], () => roundTrip()), true);
        assert.equal(await webOnline(proxy, user), 1);

        // timd restarts behind the proxy (each node in turn for the cluster): the tab reconnects
        // through the proxy and is online again, without a kick.
        const before = await inTab(b, tabs[1], () => sockets.length);
        for (const node of nodes[topology]) await node.restart();
        await waitFor(async () => (await inTab(b, tabs[1], (n) => sockets.length > n && tim.isReady() && roundTrip(), before)) === true,
          { what: `${b.browser}: tab 1 back online after the restart`, timeoutMs: 30000 });
        assert.deepEqual(await inTab(b, tabs[1], () => kicks().map((e) => e.detail)), [], 'tab 1 was not kicked');
        assert.equal(await inTab(b, tabs[1], () => tim.getLoginStatus()), 1);
        assert.match(await inTab(b, tabs[1], () => sockets.at(-1).url), /^wss:/);
        await waitFor(async () => (await webOnline(proxy, user)) === 1, { what: 'REST: online again', timeoutMs: 5000 });
        t.diagnostic(`${b.browser}: ${await inTab(b, tabs[1], () => sockets.length)} sockets in tab 1`);
        await inTab(b, tabs[1], () => tim.logout());
        // Tab 0 closed, tab 1 reused by the next scenario.
        await b.switchTo(tabs[0]);
        await b.cmd('DELETE', '/window');
        await b.switchTo(tabs[1]);
        b.fresh = true;
      }
    });
  }
}
