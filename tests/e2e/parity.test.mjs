// What pages written for tim-js-sdk 2.27.6 count on, read from its own code
// (tools/node_modules/tim-js-sdk): login resolves before SDK_READY (a handler added after
// `await login()` still sees it); a kick is KICKED_OUT then SDK_NOT_READY; destroy is
// SDK_NOT_READY then SDK_DESTROY { SDKAppID } with the TIM.create cache entry already gone;
// TIM.create gives one instance per SDKAppID (numeric strings too); once; the same handler
// added twice is called twice. In real Chromium, Firefox and WebKit against a live timd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startTimd, official, uniqueUser, SDKAPPID, root } from './timd.mjs';

let timd;
before(async () => { timd = await startTimd(); });
after(() => timd?.stop());

async function page(browser) {
  const b = await launch(browser);
  await b.navigate(`${timd.origin}/parity.html`);
  await waitFor(() => b.run(() => window.pageReady === true), { what: 'parity page' });
  return b;
}

for (const browser of BROWSERS) {
  test(`${browser}: login resolves before SDK_READY; a kick is KICKED_OUT then SDK_NOT_READY`, { timeout: 60000 }, async () => {
    const b = await page(browser);
    try {
      const user = uniqueUser('parity');
      const sig = official.genSig(user, 600);
      // A handler added only after the login resolved still gets SDK_READY.
      await b.run(async (app, u, s) => {
        window.tim = TIM.create({ SDKAppID: app });
        await traced('login', tim.login({ userID: u, userSig: s }));
        tim.on(TIM.EVENT.SDK_READY, (e) => log.push(`late ${e.name}`));
        for (const name of [TIM.EVENT.KICKED_OUT, TIM.EVENT.SDK_NOT_READY]) tim.on(name, (e) => log.push(describe(e)));
      }, SDKAPPID, user, sig);
      await waitFor(() => b.run(() => log.includes('late sdkStateReady')), { what: 'SDK_READY after login resolved' });
      assert.deepEqual(await b.run(() => log), ['login ok', 'late sdkStateReady']);
      assert.equal(await b.run(() => tim.getLoginStatus()), 1);

      // Another tab logs in the same user (one Web instance): this one is kicked.
      const other = await b.newTab();
      const first = await b.handle();
      await b.switchTo(other);
      await b.navigate(`${timd.origin}/parity.html`);
      await waitFor(() => b.run(() => window.pageReady === true), { what: 'second tab' });
      await b.run((app, u, s) => TIM.create({ SDKAppID: app }).login({ userID: u, userSig: s }), SDKAPPID, user, sig);
      await b.switchTo(first);
      await waitFor(() => b.run(() => log.includes('sdkStateNotReady')), { what: 'SDK_NOT_READY after the kick' });
      assert.deepEqual(await b.run(() => log.slice(2)), ['kickedOut:multipleAccount', 'sdkStateNotReady']);
      assert.equal(await b.run(() => tim.getLoginStatus()), 3);
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: destroy is SDK_NOT_READY then SDK_DESTROY, and TIM.create is per SDKAppID`, { timeout: 60000 }, async () => {
    const b = await page(browser);
    try {
      const user = uniqueUser('destroy');
      const sig = official.genSig(user, 600);
      const out = await b.run(async (app, u, s) => {
        const tim = watched(app);
        const same = [TIM.create({ SDKAppID: app }), TIM.create({ SDKAppID: String(app) }),
          TIM.create({ SDKAppID: ` ${app} ` })].every((t) => t === tim);
        const other = TIM.create({ SDKAppID: 'not a number' }) !== TIM.create({ SDKAppID: 'not a number' });
        await traced('login', tim.login({ userID: u, userSig: s }));
        await new Promise((r) => setTimeout(r, 50));
        // Inside its SDK_DESTROY handler the cache entry is already gone (tim-js-sdk drops it
        // in a listener added at create, before the page's).
        let inHandler;
        tim.on(TIM.EVENT.SDK_DESTROY, () => { inHandler = TIM.create({ SDKAppID: app }); });
        await traced('destroy', tim.destroy());
        const fresh = TIM.create({ SDKAppID: app });
        return { same, other, newInHandler: inHandler !== tim && inHandler === fresh, newAfter: fresh !== tim };
      }, SDKAPPID, user, sig);
      assert.deepEqual(out, { same: true, other: true, newInHandler: true, newAfter: true });
      const cargoVersion = /^version = "([^"]+)"/m.exec(readFileSync(path.join(root, 'Cargo.toml'), 'utf8'))[1];
      assert.equal(await b.run(() => TIM.VERSION), cargoVersion);
      assert.deepEqual(await b.run(() => log), ['netStateChange:connecting', 'netStateChange:connected', 'login ok',
        'sdkStateReady', 'sdkStateNotReady', `sdkDestroy:{"SDKAppID":${SDKAPPID}}`, 'destroy ok']);
    } finally {
      await b.quit();
    }
  });

  test(`${browser}: once fires once; the same handler added twice is called twice`, { timeout: 60000 }, async () => {
    const b = await page(browser);
    try {
      const user = uniqueUser('once');
      const sig = official.genSig(user, 600);
      const out = await b.run(async (app, u, s) => {
        const tim = TIM.create({ SDKAppID: app });
        const calls = { once: 0, twice: 0, removedOnce: 0, context: null };
        const ctx = { me: 'ctx' };
        tim.once(TIM.EVENT.SDK_READY, function () { calls.once++; calls.context = this; }, ctx);
        const twice = () => { calls.twice++; };
        tim.on(TIM.EVENT.SDK_READY, twice);
        tim.on(TIM.EVENT.SDK_READY, twice);
        const removed = () => { calls.removedOnce++; };
        tim.once(TIM.EVENT.SDK_READY, removed);
        tim.off(TIM.EVENT.SDK_READY, removed);
        for (let i = 0; i < 2; i++) {
          await tim.login({ userID: u, userSig: s });
          await new Promise((r) => setTimeout(r, 50));
          await tim.logout();
        }
        await tim.destroy();
        return { ...calls, context: calls.context === ctx };
      }, SDKAPPID, user, sig);
      assert.deepEqual(out, { once: 1, twice: 4, removedOnce: 0, context: true });
    } finally {
      await b.quit();
    }
  });
}
