// A timd that is reached and refuses, tried as a new user would, in real Chromium, Firefox and
// WebKit: each of timd's refusals right after the handshake (close 4006 origin not allowed, 4007
// server full, 4008 too many connections from this address, 4009 connecting too fast, 4010
// logging in too fast) and 1013 (cluster mode, Redis unreachable: a resume gets error 70169, then
// the close, since WebKitGTK shows no 1013), provoked with the flags that cause them, on real timd
// processes and a real redis-server.
//
// - A login refused so rejects with the refusal's own code (2806-2810), an Error whose message
//   names the cause and the fix, never 2800 "cannot reach the server".
// - After SDK_READY, a refused reconnect reaches the page as one ERROR event with that code;
//   the SDK backs off and comes back when the server lets it (the page never sees
//   SDK_NOT_READY), except for a refused origin: that ends the session, with no retry loop.
//
// The page (pages/refusals.html) is served by a demo timd; the refusing timds run as in
// production (no --demo), most behind the test proxy, whose cut makes the SDK reconnect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { startTimd, startProxy, startRedis, official, uniqueUser, SDKAPPID } from './timd.mjs';

// Raw sockets the page holds are never logged in: the login deadline must not close them.
const PATIENT = ['--login-timeout-ms', '600000'];
const ANY = ['--allowed-origins', '*'];
/** timd's refusals right after the handshake: flags, the SDK's code, words its message has. */
const LIMITS = {
  full: { flags: ['--max-connections', '1'], code: 2807, close: 4007, words: ['full', '--max-connections'] },
  perAddr: { flags: ['--max-connections-per-addr', '1'], code: 2808, close: 4008, words: ['too many connections from this address', '--max-connections-per-addr'] },
  connRate: { flags: ['--connection-rate-per-addr', '1'], code: 2809, close: 4009, words: ['connecting too fast', '--connection-rate-per-addr'] },
  loginRate: { flags: ['--login-rate-per-addr', '1'], code: 2810, close: 4010, words: ['logging in too fast', '--login-rate-per-addr'] },
};

let pages; // the demo timd serving the page (its origin is the page's)
let strict; // no --allowed-origins: refuses the page's origin (4006)
let allowing; // --allowed-origins <the page's origin>, restarted without it by a test
const limited = {}; // LIMITS' key -> { timd, proxy }
let redis;
let cluster; // { timd, proxy } on `redis`
const cleanups = [];

before(async () => {
  pages = await startTimd();
  cleanups.push(() => pages.stop());
  strict = await startTimd([], { demo: false });
  cleanups.push(() => strict.stop());
  allowing = await startTimd(['--allowed-origins', pages.origin], { demo: false });
  cleanups.push(() => allowing.stop());
  for (const [key, { flags }] of Object.entries(LIMITS)) {
    const timd = await startTimd([...ANY, ...PATIENT, ...flags], { demo: false });
    cleanups.push(() => timd.stop());
    const proxy = await startProxy(timd.port);
    cleanups.push(() => proxy.stop());
    limited[key] = { timd, proxy };
  }
  redis = await startRedis();
  cleanups.push(() => redis.stop());
  const timd = await startTimd([...ANY, '--redis', redis.url()], { demo: false });
  cleanups.push(() => timd.stop());
  const proxy = await startProxy(timd.port);
  cleanups.push(() => proxy.stop());
  cluster = { timd, proxy };
});

after(async () => {
  // Redis may still be stopped by a failed test: let it go on, so that it can be killed.
  redis?.resume?.();
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
});

const ws = (timd) => `ws://127.0.0.1:${timd.port}`;

/** Opens the page in `b` with the SDK pointed at `server` (`direct`: the same timd without a proxy). */
async function open(b, server, direct = server) {
  const q = new URLSearchParams({ sdkappid: String(SDKAPPID), server, direct });
  await b.navigate(`${pages.origin}/refusals.html?${q}`);
  await waitFor(() => b.run(() => window.pageReady === true), { what: 'the refusals page' });
}

/** A fresh user and an official UserSig for it. */
function credentials(tag) {
  const user = uniqueUser(tag);
  return [user, official.genSig(user, 600)];
}

/** Logs the page's SDK in (retrying while the server still counts the last page's sockets). */
async function loggedIn(b, what) {
  const [user, sig] = credentials('refusals');
  const result = await waitFor(async () => {
    const r = await b.run((u, s) => login(u, s), user, sig);
    if (r.error && [2807, 2808].includes(r.error.code)) return undefined; // the last page's sockets are still closing
    return r;
  }, { what: `${what}: a first login`, timeoutMs: 15000 });
  assert.deepEqual(result.data, { actionStatus: 'OK', errorCode: 0, errorInfo: '' }, `${what}: ${JSON.stringify(result)}`);
  await waitFor(() => b.run(() => events.includes('sdkStateReady')), { what: `${what}: SDK_READY` });
  await b.run(() => { events.length = 0; });
}

function assertRefusal(error, code, words, what) {
  assert.ok(error, `${what}: the login must reject`);
  assert.equal(error.code, code, `${what}: ${JSON.stringify(error)}`);
  assert.equal(error.isError, true, `${what}: rejects with an Error`);
  for (const w of words) assert.ok(error.message.includes(w), `${what}: the message must name ${JSON.stringify(w)}: ${JSON.stringify(error.message)}`);
}

/** Waits until the server holds no /ws connection from earlier pages (slots and tokens free). */
async function idle(timd) {
  await waitFor(async () => (await timd.metric('timd_ws_connections')) === 0, { what: 'timd idle', timeoutMs: 15000 });
}

for (const browser of BROWSERS) {
  test(`${browser}: a login refused right after the handshake rejects with the refusal's own code and a message saying what to do`, { timeout: 120000 }, async (t) => {
    const b = await launch(browser);
    try {
      // 4006: a page of another origin, a timd without --allowed-origins.
      await open(b, ws(strict));
      const [user, sig] = credentials('origin');
      const origin = await b.run((u, s) => login(u, s), user, sig);
      assertRefusal(origin.error, 2806, [pages.origin, '--allowed-origins'], '4006');
      assert.deepEqual(await b.run(() => events), ['netStateChange:connecting', 'netStateChange:connected', 'netStateChange:disconnected'],
        'a refused login is its rejection: no ERROR event, no SDK_READY');
      assert.equal(await b.run(() => TIM.ERROR_CODE.ORIGIN_NOT_ALLOWED), 2806);
      t.diagnostic(`4006: ${origin.error.message}`);

      // 4007 / 4008: the page's own raw socket takes the only slot (of the server, of the address).
      for (const key of ['full', 'perAddr']) {
        const { timd } = limited[key];
        const { code, close, words } = LIMITS[key];
        await idle(timd);
        await open(b, ws(timd));
        await b.run(() => hold());
        const r = await b.run((u, s) => login(u, s), ...credentials(key));
        assertRefusal(r.error, code, words, String(close));
        t.diagnostic(`${close}: ${r.error.message}`);
        await b.run(() => release());
      }

      // 4009: the page's raw socket spends the address's one connection a second, the login's comes next.
      {
        const { timd } = limited.connRate;
        await idle(timd);
        await open(b, ws(timd));
        const r = await b.run(async (u, s) => {
          const raw = new WebSocket(`${new URLSearchParams(location.search).get('direct')}/ws`);
          await new Promise((resolve) => { raw.onopen = resolve; raw.onclose = resolve; });
          raw.close();
          return login(u, s);
        }, ...credentials('connRate'));
        assertRefusal(r.error, 2809, LIMITS.connRate.words, '4009');
        t.diagnostic(`4009: ${r.error.message}`);
      }

      // 4010: two valid logins within the address's one login a second (a bad UserSig does not
      // spend a valid login's budget: timd counts them apart). The second (another user: the
      // SDK switches accounts, sending a login frame) gets 70050 and the close; the SDK tells
      // it from the UserSig failure limit (which keeps the socket open).
      {
        const { timd } = limited.loginRate;
        await idle(timd);
        await open(b, ws(timd));
        const [user, sig] = credentials('loginRate');
        const [other, otherSig] = credentials('loginRate2');
        const r = await b.run(async (u, s, u2, s2) => {
          const first = await login(u, s);
          return { first, second: await login(u2, s2) };
        }, user, sig, other, otherSig);
        // The first logs in (or, its token not back yet from an earlier run, is refused as the
        // second must be).
        assert.ok(r.first.data || r.first.error?.code === 2810, `the first login: ${JSON.stringify(r.first)}`);
        assertRefusal(r.second.error, 2810, LIMITS.loginRate.words, '4010');
        t.diagnostic(`4010: ${r.second.error.message}`);
      }
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: after SDK_READY, a reconnect refused with 4007-4010 is one ERROR event with the same code; the SDK backs off and comes back`, { timeout: 180000 }, async (t) => {
    const b = await launch(browser);
    try {
      for (const [key, { code, close, words }] of Object.entries(LIMITS)) {
        const { timd, proxy } = limited[key];
        await idle(timd);
        await open(b, proxy.url, ws(timd));
        if (key === 'loginRate') {
          // The socket whose renewals take the address's login tokens; its own login's token
          // refills (1 a second) before the SDK's login.
          assert.equal(await b.run((u, s) => spareLogin(u, s), ...credentials('spare')), true, 'the spare socket logged in');
          await new Promise((r) => setTimeout(r, 1100));
        }
        await loggedIn(b, String(close));
        // The moment the connection drops, the page takes what the reconnect needs: the slot
        // (4007, 4008), or the address's tokens (4009, 4010). The reconnect may still win the
        // race for a token (one in a few hundred): then cut again.
        const kind = { full: 'slot', perAddr: 'slot', connRate: 'connects', loginRate: 'logins' }[key];
        const reason = { full: 'max_connections', perAddr: 'max_connections_per_addr', connRate: 'connection_rate', loginRate: 'login_rate' }[key];
        let cutAt;
        for (let tries = 1; ; tries++) {
          await b.run(() => { events.length = 0; });
          await b.run((k) => armOnDrop(k), kind);
          cutAt = Date.now();
          await proxy.cut();
          const outcome = await waitFor(() => b.run(() => (errors.length ? 'refused' : events.includes('netStateChange:connected') && 'won')),
            { what: `${close}: ERROR ${code}`, timeoutMs: 30000 })
            .catch(async (e) => assert.fail(`${e.message}; events: ${JSON.stringify(await b.run(() => events))}`));
          if (outcome === 'refused') break;
          assert.ok(tries < 5, `${close}: the reconnect got in before the page took what it needs, ${tries} times`);
          await b.run(async () => { await armed; release(); });
          t.diagnostic(`${close}: the reconnect won the race, cutting again`);
        }
        const [error] = await b.run(() => errors);
        assert.equal(error.code, code, `${close}: ${JSON.stringify(error)}`);
        for (const w of words) assert.ok(error.message.includes(w), `${close}: the message must name ${JSON.stringify(w)}: ${JSON.stringify(error)}`);
        assert.equal(await b.run(() => tim.isReady()), true, `${close}: still logged in while it backs off`);
        if (key === 'full') {
          // Refused again, and again no second ERROR (one per outage).
          const before = await timd.metric(`timd_ws_refused_total{reason="${reason}"}`);
          await waitFor(async () => (await timd.metric(`timd_ws_refused_total{reason="${reason}"}`)) > before,
            { what: `${close}: a second refused attempt`, timeoutMs: 15000 });
        }
        // Let the reconnect in: it comes back on its own, after the longer backoff of a refusal.
        await b.run(async () => { await armed; release(); });
        await waitFor(() => b.run(() => events.includes('netStateChange:connected')), { what: `${close}: back connected`, timeoutMs: 30000 })
          .catch(async (e) => assert.fail(`${e.message}; events: ${JSON.stringify(await b.run(() => events))}`));
        const seen = await b.run(() => events);
        assert.deepEqual(seen, ['netStateChange:connecting', `error:${code}`, 'netStateChange:connected'],
          `${close}: one ERROR however many attempts were refused, never SDK_NOT_READY`);
        assert.equal(await b.run(() => tim.isReady()), true);
        t.diagnostic(`${close}: ERROR ${code} ("${error.message}"), back connected ${Date.now() - cutAt} ms after the cut`);
        await b.run(() => tim.destroy());
      }
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: after SDK_READY, a refused origin (4006) ends the session with ERROR and SDK_NOT_READY, and is not retried`, { timeout: 120000 }, async () => {
    const b = await launch(browser);
    try {
      await allowing.restart({ with: ['--allowed-origins', pages.origin] });
      await open(b, ws(allowing));
      await loggedIn(b, '4006 after SDK_READY');
      // The operator restarts timd without the page's origin.
      await allowing.restart({ with: [] });
      await waitFor(() => b.run(() => events.includes('sdkStateNotReady')), { what: 'SDK_NOT_READY', timeoutMs: 30000 })
        .catch(async (e) => assert.fail(`${e.message}; events: ${JSON.stringify(await b.run(() => events))}`));
      const seen = await b.run(() => events);
      assert.deepEqual(seen.slice(-3), ['error:2806', 'netStateChange:disconnected', 'sdkStateNotReady'], JSON.stringify(seen));
      assert.ok(!seen.some((e) => e.startsWith('kickedOut')), JSON.stringify(seen));
      const [error] = await b.run(() => errors);
      assert.ok(error.message.includes(pages.origin) && error.message.includes('--allowed-origins'), JSON.stringify(error));
      assert.equal(await b.run(() => tim.isReady()), false);
      assert.equal(await b.run(() => tim.getLoginStatus()), 3);
      // No loop: over longer than the backoff's first steps, timd sees that one attempt only.
      const refused = 'timd_ws_refused_total{reason="origin"}';
      assert.equal(await allowing.metric(refused), 1);
      await new Promise((r) => setTimeout(r, 3000)); // an observation window, not a barrier
      assert.equal(await allowing.metric(refused), 1, 'the SDK tried again after a refused origin');
      assert.deepEqual(await b.run(() => events), seen, 'nothing after SDK_NOT_READY');
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: cluster mode, Redis paused: a login rejects 70169; a reconnect put off (70169, close 1013) is ERROR 2813 and comes back with Redis`, { timeout: 120000 }, async (t) => {
    const { timd, proxy } = cluster;
    const b = await launch(browser);
    try {
      await open(b, proxy.url, ws(timd));
      // A login while Redis does not answer: the server's "try again later".
      redis.pause();
      let r;
      try {
        r = await b.run((u, s) => login(u, s), ...credentials('cluster'));
      } finally {
        redis.resume();
      }
      assert.equal(r.error && r.error.code, 70169, JSON.stringify(r));
      assert.match(r.error.message, /session store/);
      await b.run(() => { events.length = 0; });

      await loggedIn(b, '1013');
      redis.pause();
      try {
        await proxy.cut();
        await waitFor(() => b.run(() => errors.some((e) => e.code === 2813)), { what: 'ERROR 2813', timeoutMs: 30000 })
          .catch(async (e) => assert.fail(`${e.message}; events: ${JSON.stringify(await b.run(() => events))}`));
        assert.equal(await b.run(() => tim.isReady()), true);
      } finally {
        redis.resume();
      }
      const resumedAt = Date.now();
      await waitFor(() => b.run(() => events.includes('netStateChange:connected')), { what: 'back connected', timeoutMs: 40000 })
        .catch(async (e) => assert.fail(`${e.message}; events: ${JSON.stringify(await b.run(() => events))}`));
      assert.deepEqual(await b.run(() => events), ['netStateChange:connecting', 'error:2813', 'netStateChange:connected']);
      const [error] = await b.run(() => errors);
      assert.match(error.message, /session store.*Redis/);
      t.diagnostic(`1013: ${error.message}; back ${Date.now() - resumedAt} ms after Redis`);
      await b.run(() => tim.logout());
    } finally {
      await b.quit();
    }
  });
}
