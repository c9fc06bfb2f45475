// Login settings changed at run time, seen by real tabs (Chromium, Firefox and WebKit through
// WebDriver): Online Web Instances = 1, two tabs of one user (the first is kicked), the admin
// raises the limit to 2 through timd's REST endpoint, a third tab logs in and fits beside the
// second; a fourth exceeds the new limit and only then is the earliest left (the second) kicked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, waitFor, BROWSERS } from './webdriver.mjs';
import { startTimd, official, uniqueUser, SDKAPPID } from './timd.mjs';
import { tabUrl, openTab, inTab, kickTypes, settled } from './tab-page.mjs';

let timd; // the defaults: one Web instance, dual policy

before(async () => {
  timd = await startTimd([]);
});

after(async () => {
  await timd?.stop();
});

/** A timd REST call as the app admin; resolves with the parsed answer. */
async function rest(api, body) {
  const q = new URLSearchParams({
    sdkappid: String(SDKAPPID),
    identifier: 'administrator',
    usersig: official.genSig('administrator', 600),
    random: String(Math.floor(Math.random() * 2 ** 32)),
    contenttype: 'json',
  });
  const res = await fetch(`${timd.origin}/v4/${api}?${q}`, { method: 'POST', body: JSON.stringify(body) });
  return res.json();
}

for (const browser of BROWSERS) {
  test(`${browser}: a Web limit raised through set_login_settings decides the next tab`, { timeout: 120000 }, async () => {
    const back = await rest('timd/set_login_settings', { WebInstances: 1 });
    assert.equal(back.ErrorCode, 0, JSON.stringify(back));
    const b = await launch(browser);
    try {
      const user = uniqueUser('settings');
      const url = tabUrl(timd, user, official.genSig(user, 600));
      const t1 = await openTab(b, url, { first: true });
      const t2 = await openTab(b, url);
      await waitFor(() => inTab(b, t1, () => kicks().length > 0), { what: 't1 kicked (limit 1)' });
      assert.deepEqual(await kickTypes(b, t1), ['multipleAccount']);

      const set = await rest('timd/set_login_settings', { WebInstances: 2 });
      assert.equal(set.ErrorCode, 0, JSON.stringify(set));
      assert.equal(set.LoginSettings.WebInstances, 2);

      const t3 = await openTab(b, url);
      await settled(b, t2, 't2');
      assert.deepEqual(await kickTypes(b, t2), [], 't2 stays: the third tab fits the new limit');
      assert.equal(await inTab(b, t2, () => tim.isReady()), true);
      assert.equal(await inTab(b, t3, () => tim.isReady()), true);

      const t4 = await openTab(b, url);
      await waitFor(() => inTab(b, t2, () => kicks().length > 0), { what: 't2 kicked by the fourth tab' });
      assert.deepEqual(await kickTypes(b, t2), ['multipleAccount']);
      await settled(b, t3, 't3');
      assert.deepEqual(await kickTypes(b, t3), []);
      assert.equal(await inTab(b, t4, () => tim.isReady()), true);
    } finally {
      await b.quit();
    }
  });
}
