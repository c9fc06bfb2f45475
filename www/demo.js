// The demo page: this tab's SDK instance (log in with just a user name), the user's instances
// across tabs and devices as the server sees them, the server's login settings, and buttons
// that make the server kick: another tab, a native device, the admin REST API.
import TIM from 'tim-wasm';
import { api } from './api.js';
import { Feed, InstanceView, clock, short } from './instances.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// ---- the server's login settings (live: the admin changes them at run time) -----------
let settings = await api.settings();
const POLICIES = {
  single: 'one platform at a time, Web included',
  dual: 'one mobile or desktop device, plus Web',
  triple: 'one mobile and one desktop device, plus Web',
  all: 'every platform at once',
};
const showSettings = () => {
  $('set-web').textContent = settings.webInstances;
  $('set-platform').textContent = settings.platformInstances;
  $('set-policy').textContent = settings.policy;
  $('set-policy-text').textContent = POLICIES[settings.policy] ?? '';
  $('set-version').textContent = settings.version;
  $('set-app').textContent = settings.SDKAppID;
  $('set-admin').textContent = settings.admin;
  $('max-devices').textContent = settings.maxDemoDevices;
};
showSettings();

const REASONS = {
  multipleAccount: () => `a newer login on the same platform went over its limit (Web: ${settings.webInstances}, others: ${settings.platformInstances}); the earliest goes`,
  multipleDevice: () => `a login on another platform, which the "${settings.policy}" policy does not allow beside it`,
  userSigExpired: () => 'its UserSig expired',
  REST_API_Kick: () => `the admin (${settings.admin}) kicked the user through the REST API`,
};
const reasonText = (reason) => REASONS[reason]?.() ?? '';

// ---- this tab's SDK instance -----------------------------------------------------------
const tim = TIM.create({ SDKAppID: settings.SDKAppID });
window.tim = tim;

// The SDK keeps this tab's instance id in sessionStorage (README, "Instances and tickets"):
// an instance whose id is there is this tab. Should none be found, the Web instance that
// logged in during this tab's last login call is taken instead.
let loginWindow = null;
const storedIds = () => {
  const ids = new Set();
  try {
    for (let i = 0; i < sessionStorage.length; i++) ids.add(sessionStorage.getItem(sessionStorage.key(i)));
  } catch (_) { /* storage disabled */ }
  return ids;
};
const isMine = (i) => {
  if (i.platform !== 'Web') return false;
  const ids = storedIds();
  if (ids.size) return ids.has(i.instance);
  return !!loginWindow && i.since >= loginWindow[0] && i.since <= loginWindow[1];
};

const log = (line) => {
  const box = $('log');
  box.textContent += `${clock(Date.now())}  ${line}\n`;
  box.scrollTop = box.scrollHeight;
};
const feed = new Feed($('feed'));
const view = new InstanceView({
  table: $('instances'), title: $('watched'), empty: $('instances-empty'), feed, isMine, reasonText,
  stopDevice: (instance) => api.stopDevice(instance)
    .catch((e) => feed.add({ kind: 'error', text: `log out of device ${short(instance)} failed: ${e.message}` })),
});

const show = () => {
  const ready = tim.isReady();
  $('state').textContent = ready ? `ready as ${tim.getLoginUser()}` : 'not logged in';
  $('state').className = ready ? 'ready' : '';
  const user = view.user;
  for (const id of ['open-tab', 'device-login', 'rest-kick']) $(id).disabled = !user;
  $('actions-user').textContent = user ?? 'the user';
};

const kicked = (type) => {
  const box = $('kicked');
  if (!type) { box.hidden = true; return; }
  box.dataset.type = type;
  $('kicked-type').textContent = type;
  $('kicked-why').textContent = reasonText(type);
  $('kicked-at').textContent = clock(Date.now());
  box.hidden = false;
};

for (const name of Object.values(TIM.EVENT)) {
  tim.on(name, (event) => {
    log(`event ${event.name} ${event.data ? JSON.stringify(event.data) : ''}`);
    if (event.name === TIM.EVENT.KICKED_OUT) {
      kicked(event.data.type);
      feed.add({ kind: 'kick mine', reason: event.data.type, text: `this tab got KICKED_OUT ${event.data.type}`, detail: 'the SDK event' });
    }
    if (event.name === TIM.EVENT.SDK_READY) kicked(null);
    show();
  });
}

const useUser = (user) => {
  if (!user) return;
  view.watch(user);
  history.replaceState(null, '', `?user=${encodeURIComponent(user)}`);
  show();
};

// A REST kick revokes the UserSigs issued up to its second and answers once that second is
// over: a login waits for it, so its UserSig is issued after the kick.
let pendingKick = Promise.resolve();

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const userID = $('user').value.trim();
  const valid = /^[A-Za-z0-9_-]{1,32}$/.test(userID);
  if (valid) useUser(userID);
  try {
    await pendingKick;
    // A name that is no UserID has no UserSig to sign: the SDK refuses it itself (2002).
    const userSig = valid ? (await api.usersig(userID)).userSig : '';
    const started = Date.now();
    const imResponse = await tim.login({ userID, userSig });
    loginWindow = [started - 1000, Date.now() + 1000];
    log(`login ok ${JSON.stringify(imResponse.data)}`);
  } catch (imError) {
    log(`login error ${imError.code}: ${imError.message}`);
  }
  show();
});
$('logout').addEventListener('click', () => tim.logout()
  .then(() => log('logout ok'), (err) => log(`logout error ${err.code}: ${err.message}`)).finally(show));
$('destroy').addEventListener('click', () => tim.destroy()
  .then(() => log('destroyed: reload the page to start again'), (err) => log(`destroy error ${err.code}: ${err.message}`)).finally(show));
$('user').addEventListener('change', () => {
  const user = $('user').value.trim();
  if (!tim.isReady() && /^[A-Za-z0-9_-]{1,32}$/.test(user)) useUser(user);
});

// ---- buttons that make the server kick ---------------------------------------------------
$('open-tab').addEventListener('click', () => {
  window.open(`/?user=${encodeURIComponent(view.user)}&login=1`, '_blank', 'noopener');
  feed.add({ text: `opened another tab as ${view.user} (it logs in by itself)` });
});

$('device-login').addEventListener('click', async () => {
  const platform = $('device-platform').value;
  const button = $('device-login');
  button.disabled = true;
  feed.add({ text: `starting a native ${platform} device as ${view.user}…` });
  try {
    await pendingKick;
    await api.startDevice(view.user, platform); // its login shows in the list and the feed
  } catch (e) {
    feed.add({ kind: 'error', text: `native ${platform} device: ${e.message}` });
  } finally {
    button.disabled = false;
  }
});

$('rest-kick').addEventListener('click', async () => {
  const button = $('rest-kick');
  button.disabled = true;
  const kick = api.kick(view.user);
  pendingKick = kick.catch(() => {});
  try {
    const answer = await kick;
    feed.add({ kind: answer.ErrorCode ? 'error' : 'note', text: `REST kick of ${view.user} as ${settings.admin}: ${answer.ActionStatus}${answer.ErrorCode ? ` ${answer.ErrorCode} ${answer.ErrorInfo}` : ''}` });
  } catch (e) {
    feed.add({ kind: 'error', text: `REST kick: ${e.message}` });
  } finally {
    button.disabled = false;
  }
});

// ---- start -------------------------------------------------------------------------------
view.start();
log(`SDK loaded (SDKAppID ${settings.SDKAppID})`);

// A settings change (set_login_settings) shows within SETTINGS_POLL_MS, noted in the log.
const SETTINGS_POLL_MS = 1000;
setInterval(async () => {
  let now;
  try { now = await api.settings(); } catch (_) { return; /* the server restarts: next time */ }
  if (now.version === settings.version) return;
  settings = now;
  showSettings();
  log(`login settings changed (version ${now.version}): Web ${now.webInstances}, others ${now.platformInstances}, policy ${now.policy}`);
}, SETTINGS_POLL_MS);
const prefilled = params.get('user');
if (prefilled) {
  $('user').value = prefilled;
  useUser(prefilled);
  if (params.get('login') === '1') $('form').requestSubmit();
}
show();
