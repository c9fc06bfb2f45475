// Driving `pages/tab.html` (one SDK instance per tab, logging in from its URL) in a WebDriver
// session: open a tab and wait for its login, run code in a given tab, read its kicks, and a
// round trip on its socket. Shared by the tests that open real tabs.
import assert from 'node:assert/strict';
import { waitFor } from './webdriver.mjs';
import { SDKAPPID } from './timd.mjs';

/** The tab page on `server` logging in as `user` with `sig` (and `storage` preset). */
export const tabUrl = (server, user, sig, storage) => {
  const q = new URLSearchParams({ sdkappid: String(SDKAPPID) });
  if (user) { q.set('user', user); q.set('sig', sig); }
  if (storage) q.set('storage', JSON.stringify(storage));
  return `${server.origin}/tab.html?${q}`;
};

/** Opens `url` in a new tab (or the current one for the first) and waits for its login. */
export async function openTab(b, url, { first = false } = {}) {
  const handle = first ? await b.handle() : await b.newTab();
  await b.switchTo(handle);
  await b.navigate(url);
  await waitFor(() => b.run(() => window.pageReady === true), { what: 'tab page' });
  const res = await b.run(() => window.autoLogin);
  assert.equal(res && res.actionStatus, 'OK', `login in the tab: ${JSON.stringify(res)}`);
  return handle;
}

export async function inTab(b, handle, fn, ...args) {
  await b.switchTo(handle);
  return b.run(fn, ...args);
}

/** The `KICKED_OUT` types tab `h` got, in order. */
export const kickTypes = (b, h) => inTab(b, h, () => kicks().map((e) => e.detail));

/** A round trip with the server on tab `h`'s socket (the page's `roundTrip`): once it is back,
 * whatever the server sent the tab before (a wrong kick, say) has arrived and been handled. */
export async function settled(b, h, what) {
  assert.equal(await inTab(b, h, () => roundTrip()), true, `${what}: a round trip with the server`);
}
