// State.StateChange callbacks from REAL browser tabs (Chromium, Firefox and WebKit through
// WebDriver): a tab's login, a second tab's login kicking it (one Login with KickedDevice, nothing
// for the kicked tab), the second tab closed (Disconnect/LinkClose), then a third tab's login (kicking the
// closed tab's slot, still held for a resume) and logout — seen by a receiver this test runs, in that order, signed as Tencent signs them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { launch, waitFor, freePort, BROWSERS } from './webdriver.mjs';
import { startTimd, official, uniqueUser, SDKAPPID } from './timd.mjs';
import { tabUrl, openTab, inTab } from './tab-page.mjs';

const TOKEN = 'e2e-callback-token';
let server;
let receiver;
const received = [];

before(async () => {
  const port = await freePort();
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const url = new URL(req.url, 'http://x');
      received.push({ query: Object.fromEntries(url.searchParams), body: JSON.parse(body) });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ActionStatus: 'OK', ErrorInfo: '', ErrorCode: 0 }));
    });
  });
  await new Promise((r) => receiver.listen(port, '127.0.0.1', r));
  server = await startTimd(['--web-instances', '1', '--callback-url', `http://127.0.0.1:${port}/im`, '--callback-token', TOKEN]);
});

after(async () => {
  await server?.stop();
  receiver?.close();
});

/** `user`'s callbacks so far: [Action, Reason, KickedDevice platforms]. */
const of = (user) => received
  .filter((r) => r.body.Info.To_Account === user)
  .map((r) => [r.body.Info.Action, r.body.Info.Reason, (r.body.KickedDevice || []).map((d) => d.Platform)]);

for (const browser of BROWSERS) {
  test(`${browser}: login, a second tab's kick, a closed tab and a logout reach the receiver in order`, { timeout: 120000 }, async () => {
    const b = await launch(browser);
    try {
      const user = uniqueUser('callbacks');
      const url = tabUrl(server, user, official.genSig(user, 600));
      await openTab(b, url, { first: true });
      await waitFor(async () => of(user).length === 1, { what: 'the first Login' });
      const second = await openTab(b, url);
      await waitFor(async () => of(user).length === 2, { what: 'the second Login' });
      // The second tab closes: its socket goes without a logout.
      await b.switchTo(second);
      await b.cmd('DELETE', '/window');
      await waitFor(async () => of(user).length === 3, { what: 'Disconnect/LinkClose' });
      // A third tab (from the first, kicked one, still open) logs in, then out.
      const [first] = await b.cmd('GET', '/window/handles');
      await b.switchTo(first);
      const third = await openTab(b, url);
      await inTab(b, third, () => tim.logout());
      await waitFor(async () => of(user).length === 5, { what: 'the third tab\'s Login and Logout' });
      assert.deepEqual(of(user), [
        ['Login', 'Register', []],
        ['Login', 'Register', ['Web']],
        ['Disconnect', 'LinkClose', []],
        // The closed tab's slot waits for a resume (--resume-grace-ms): the third tab, over the
        // limit of one, kicks it.
        ['Login', 'Register', ['Web']],
        ['Logout', 'Unregister', []],
      ]);
      for (const r of received.filter((r) => r.body.Info.To_Account === user)) {
        assert.equal(r.query.SdkAppid, String(SDKAPPID));
        assert.equal(r.query.CallbackCommand, 'State.StateChange');
        assert.equal(r.query.OptPlatform, 'Web');
        assert.equal(r.query.Sign, createHash('sha256').update(TOKEN + r.query.RequestTime).digest('hex'));
      }
    } finally {
      await b.quit();
    }
  });
}
