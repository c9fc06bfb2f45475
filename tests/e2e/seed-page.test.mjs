// End to end, in real Chromium, Firefox and WebKit: the npm package (pkg/) imported as
// 'tim-wasm' by a page written from the seed documents, served by a live timd, logging in with
// UserSigs made at test time by Tencent's official Node generator (tls-sig-api-v2).
//
// Needs pkg/ built (scripts/build-pkg.sh) and target/debug/timd (scripts/test.sh does both).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { startTimd, official, uniqueUser, SDKAPPID, TLSSigAPIv2 } from './timd.mjs';

const wrongKey = new TLSSigAPIv2.Api(SDKAPPID, 'not-the-key');

let timd;
let origin;

before(async () => {
  timd = await startTimd();
  origin = timd.origin;
});

after(() => timd?.stop());

for (const browser of BROWSERS) {
  test(`seed page in ${browser}: login, repeat login, errors, logout, destroy`, { timeout: 120000 }, async () => {
    const b = await launch(browser);
    try {
      await b.navigate(`${origin}/seed.html?sdkappid=${SDKAPPID}`);
      await waitFor(() => b.run(() => window.pageReady === true), { what: 'page' });

      assert.deepEqual(await b.run(() => [TIM.EVENT.SDK_READY, TIM.EVENT.KICKED_OUT, TIM.TYPES.KICKED_OUT_MULT_ACCOUNT]),
        ['sdkStateReady', 'kickedOut', 'multipleAccount']);

      // Errors first, each with its documented code, on the same instance.
      const bad = uniqueUser('bad');
      await assert.rejects(b.run((u, s) => seedLogin(u, s), bad, wrongKey.genSig(bad, 600)), { code: 70009 });
      await assert.rejects(b.run((u, s) => seedLogin(u, s), bad, official.genSig('somebody_else', 600)), { code: 70013 });
      await assert.rejects(b.run((u, s) => seedLogin(u, s), 'not a user!', official.genSig(bad, 600)), { code: 2002 });
      await assert.rejects(b.run((u) => seedLogin(u, ''), bad), { code: 2003 });

      const user = uniqueUser('seed');
      const sig = official.genSig(user, 600);
      const data = await b.run((u, s) => seedLogin(u, s), user, sig);
      assert.deepEqual(data, { actionStatus: 'OK', errorCode: 0, errorInfo: '' });
      assert.equal(await b.run(() => tim.getLoginUser()), user);
      assert.equal(await b.run(() => tim.isReady()), true);
      await waitFor(() => b.run(() => events.includes('sdkStateReady')), { what: 'SDK_READY' });

      const again = await b.run((u, s) => seedLogin(u, s), user, sig);
      assert.equal(again.repeatLogin, true);
      assert.ok(again.errorInfo.length > 0);

      await b.run(() => seedLogout());
      assert.equal(await b.run(() => tim.isReady()), false);
      assert.deepEqual(await b.run(() => events), ['sdkStateReady', 'sdkStateNotReady']);

      assert.equal(await b.run(() => seedDestroy()), 'sdk destroyed');
      await assert.rejects(b.run((u, s) => seedLogin(u, s), user, sig), { code: 2905 });
    } finally {
      await b.quit();
    }
  });

  test(`seed page in ${browser}: an expired official UserSig fails with 70001`, { timeout: 60000 }, async () => {
    const user = uniqueUser('expired');
    const sig = official.genSig(user, 1);
    await new Promise((r) => setTimeout(r, 2100));
    const b = await launch(browser);
    try {
      await b.navigate(`${origin}/seed.html?sdkappid=${SDKAPPID}`);
      await waitFor(() => b.run(() => window.pageReady === true), { what: 'page' });
      await assert.rejects(b.run((u, s) => seedLogin(u, s), user, sig), { code: 70001 });
    } finally {
      await b.quit();
    }
  });
}
