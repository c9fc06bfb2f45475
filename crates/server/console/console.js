// The operator's console (served by timd at /console, docs/console.md). Everything it shows
// comes from the admin REST API of the server that served it, called with the admin UserSig
// the operator pasted: authenticated and rate-limited as any REST client. The UserSig lives
// in this tab's sessionStorage only.

const $ = (id) => document.getElementById(id);
const STORAGE = 'timd-console/auth';
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';

// What each code a sign-in can meet means (docs/rest.md).
const MEANINGS = {
  0: 'the server cannot be reached (network down, or timd stopped)',
  60002: 'the request URL is malformed',
  60006: 'this server does not serve that SDKAppID',
  60011: 'too many REST calls for this app: retry in a moment',
  60012: 'SDKAppID missing',
  70001: 'the UserSig has expired, or was issued before a REST kick of the admin account',
  70002: 'the UserSig is empty',
  70003: 'the UserSig cannot be decoded (truncated or not a UserSig)',
  70009: 'the UserSig was signed with another key (wrong app key)',
  70013: 'the UserSig was made for another identifier than the admin named here',
  70014: 'the UserSig was made for another SDKAppID',
  70169: 'the server timed out (session store unreachable): try again',
  70403: 'this identifier is not an admin of the app',
  70500: 'internal server error',
};
// Codes that mean the credentials no longer work: back to the sign-in form.
const AUTH_CODES = new Set([60006, 70001, 70002, 70003, 70009, 70013, 70014, 70403]);
const POLICIES = { single: 'single', dual: 'dual', triple: 'triple', all: 'all' };

let auth = null; // { sdkappid, admin, usersig }
let generation = 0; // bumped on sign-out: loops of an older sign-in stop
let watched = null; // the user looked up

class RestError extends Error {
  constructor(code, info) { super(info); this.code = code; }
}

/** One admin REST call; resolves with the answer, rejects with a RestError. */
async function rest(api, body = {}, creds = auth) {
  const q = new URLSearchParams({
    sdkappid: creds.sdkappid,
    identifier: creds.admin,
    usersig: creds.usersig,
    random: String(crypto.getRandomValues(new Uint32Array(1))[0]),
    contenttype: 'json',
  });
  let res;
  try {
    res = await fetch(`/v4/${api}?${q}`, {
      method: 'POST', cache: 'no-store', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
  } catch (e) {
    throw new RestError(0, `cannot reach the server: ${e.message}`);
  }
  const answer = await res.json().catch(() => null);
  if (!answer) throw new RestError(res.status, `HTTP ${res.status}`);
  if (answer.ErrorCode !== 0) throw new RestError(answer.ErrorCode, answer.ErrorInfo);
  return answer;
}

function describe(e) {
  const meaning = MEANINGS[e.code];
  return { code: e.code, text: meaning ? `${meaning}.` : '', info: e.message };
}

function showError(box, e) {
  const d = describe(e);
  box.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = `Error ${d.code}`;
  const span = document.createElement('span');
  span.textContent = ` ${d.text} `;
  const small = document.createElement('small');
  small.textContent = `(server: ${d.info})`;
  box.append(strong, span, small);
  box.dataset.code = String(d.code);
  box.hidden = false;
}

const time = (ms) => new Date(ms).toLocaleTimeString();
const dateTime = (ms) => new Date(ms).toLocaleString();
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'class') e.className = v;
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

// --- sign in / out -----------------------------------------------------------------------

async function signIn(creds, { remember = true } = {}) {
  $('signin-error').hidden = true;
  $('signin-button').disabled = true;
  try {
    const settings = await rest('timd/get_login_settings', {}, creds);
    auth = creds;
    if (remember) sessionStorage.setItem(STORAGE, JSON.stringify(creds));
    start(settings);
  } catch (e) {
    sessionStorage.removeItem(STORAGE);
    showError($('signin-error'), e);
  } finally {
    $('signin-button').disabled = false;
  }
}

function signOut(reason) {
  generation++;
  auth = null;
  watched = null;
  sessionStorage.removeItem(STORAGE);
  for (const id of ['settings', 'online', 'happens', 'who', 'lookup']) $(id).hidden = true;
  $('signin').hidden = false;
  $('feed').replaceChildren();
  if (reason) showError($('signin-error'), reason);
}

/** A failed call while signed in: credentials gone bad end the session. */
function failed(e, box) {
  if (e instanceof RestError && AUTH_CODES.has(e.code)) {
    signOut(e);
    return true;
  }
  if (box) showError(box, e);
  return false;
}

function start(settings) {
  const gen = ++generation;
  $('signin').hidden = true;
  for (const id of ['settings', 'online', 'happens', 'who']) $(id).hidden = false;
  $('who-app').textContent = auth.sdkappid;
  $('who-admin').textContent = auth.admin;
  showSettings(settings);
  loadHistory();
  pollOnline(gen);
  followEvents(gen);
  pollCounts(gen);
}

// --- login settings -----------------------------------------------------------------------

function showSettings(answer) {
  const s = answer.LoginSettings;
  $('set-web').value = s.WebInstances;
  $('set-platform').value = s.PlatformInstances;
  $('set-policy').value = s.MultiPlatformPolicy;
  $('set-version').textContent = answer.Version;
  $('settings').dataset.version = answer.Version;
}

const describeSettings = (s) => `Web ${s.WebInstances}, others ${s.PlatformInstances}, ${POLICIES[s.MultiPlatformPolicy] ?? s.MultiPlatformPolicy}`;

function changeText(old, now) {
  if (!old) return describeSettings(now);
  const parts = [];
  if (old.WebInstances !== now.WebInstances) parts.push(`Web instances ${old.WebInstances} → ${now.WebInstances}`);
  if (old.PlatformInstances !== now.PlatformInstances) parts.push(`other platforms ${old.PlatformInstances} → ${now.PlatformInstances}`);
  if (old.MultiPlatformPolicy !== now.MultiPlatformPolicy) parts.push(`policy ${old.MultiPlatformPolicy} → ${now.MultiPlatformPolicy}`);
  return parts.length ? parts.join('; ') : `unchanged (${describeSettings(now)})`;
}

async function loadHistory() {
  try {
    const { History } = await rest('timd/get_login_settings_history');
    const rows = History.map((h, i) => {
      const older = History[i + 1]?.LoginSettings;
      return el('tr', { dataset: { version: h.Version, admin: h.Admin } },
        el('td', {}, String(h.Version)),
        el('td', {}, dateTime(h.Time * 1000)),
        el('td', {}, h.Admin),
        el('td', { class: 'change' }, changeText(older, h.LoginSettings)));
    });
    $('history').tBodies[0].replaceChildren(...rows);
  } catch (e) { failed(e, $('set-result')); }
}

async function saveSettings(ev) {
  ev.preventDefault();
  const result = $('set-result');
  result.className = 'result';
  result.textContent = 'saving…';
  const body = {
    WebInstances: Number($('set-web').value),
    PlatformInstances: Number($('set-platform').value),
    MultiPlatformPolicy: $('set-policy').value,
    ApplyNow: $('set-apply-now').checked ? 1 : 0,
  };
  try {
    const answer = await rest('timd/set_login_settings', body);
    showSettings(answer);
    result.textContent = `saved: version ${answer.Version}${body.ApplyNow ? ', applied now' : ', for the next logins'}`;
    result.dataset.version = answer.Version;
    // An explicit choice each time: a second save does not kick again unless asked.
    $('set-apply-now').checked = false;
    loadHistory();
  } catch (e) {
    if (!failed(e)) {
      result.className = 'result bad';
      result.textContent = `Error ${e.code}: ${e.message}`;
    }
  }
}

// --- who is online ------------------------------------------------------------------------

async function pollOnline(gen) {
  while (gen === generation) {
    try {
      const s = await rest('timd/online_summary');
      if (gen !== generation) return;
      $('online-total').textContent = s.Online;
      $('away-total').textContent = s.Away;
      $('online').dataset.online = s.Online;
      $('platforms').tBodies[0].replaceChildren(...s.Platforms.map((p) => el('tr', { dataset: { platform: p.Platform, online: p.Online, away: p.Away } },
        el('td', {}, p.Platform), el('td', {}, String(p.Online)), el('td', {}, String(p.Away)))));
      $('nodes').hidden = s.Nodes.length === 0;
      $('nodes').tBodies[0].replaceChildren(...s.Nodes.map((n) => el('tr', { dataset: { node: n.Node, online: n.Online } },
        el('td', { class: 'mono' }, n.Node, n.Node === s.Node ? el('small', {}, ' (serves this console)') : ''),
        el('td', {}, String(n.Online)), el('td', {}, String(n.Away)))));
      if (watched) await showUser(watched, gen);
    } catch (e) {
      if (failed(e)) return;
    }
    await sleep(2000);
  }
}

async function showUser(user, gen = generation) {
  const box = $('lookup-error');
  try {
    const u = await rest('timd/user_sessions', { UserID: user });
    if (gen !== generation || watched !== user) return;
    box.hidden = true;
    $('lookup').hidden = false;
    $('lookup-name').textContent = u.UserID;
    const cluster = u.Instances.some((i) => i.Node);
    for (const th of document.querySelectorAll('#instances .node')) th.hidden = !cluster;
    $('instances').tBodies[0].replaceChildren(...u.Instances.map((i) => el('tr', {
      dataset: { instance: i.Instance, platform: i.Platform, status: i.Status, node: i.Node },
    },
    el('td', {}, i.Platform),
    el('td', { class: 'mono' }, i.Instance),
    el('td', {}, `${time(i.Since)} (${ago(u.ServerTime - i.Since)})`),
    el('td', {}, el('span', { class: `dot ${i.Status === 'Online' ? 'on' : 'away'}` }), i.Status === 'Online' ? 'online' : 'away'),
    ...(cluster ? [el('td', { class: 'mono' }, i.Node)] : []))));
    $('instances-empty').textContent = u.Instances.length ? '' : 'No instance online.';
    $('user-kicks').replaceChildren(...u.RecentKicks.slice().reverse().map((k) => el('li', { dataset: { reason: k.Reason, instance: k.Instance } },
      `${time(k.Time)} ${k.Platform} ${k.Instance}: ${k.Reason}`)));
  } catch (e) {
    if (failed(e)) return;
    $('lookup').hidden = true;
    showError(box, e);
  }
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

function lookUp(ev) {
  ev.preventDefault();
  watched = $('lookup-user').value.trim();
  showUser(watched);
}

function askKick() {
  if (!watched) return;
  $('confirm-user').textContent = watched;
  $('confirm').showModal();
}

async function confirmed() {
  if ($('confirm').returnValue !== 'kick' || !watched) return;
  const user = watched;
  try {
    await rest('im_open_login_svc/kick', { UserID: user });
    await showUser(user);
  } catch (e) {
    failed(e, $('lookup-error'));
  }
}

// --- what happens -------------------------------------------------------------------------

const KIND_TEXT = { Login: 'logged in', Resume: 'reconnected', Logout: 'logged out', Disconnect: 'disconnected', Kicked: 'kicked' };
let countsDue = null;

async function followEvents(gen) {
  let stream;
  let after = 0;
  const seen = new Set();
  while (gen === generation) {
    try {
      const page = await rest('timd/get_events', { Stream: stream, After: after, Wait: 20 });
      if (gen !== generation) return;
      stream = page.Stream;
      after = page.Next;
      const fresh = page.Events.filter((e) => !seen.has(e.Id));
      for (const e of fresh) { seen.add(e.Id); addEvent(e); }
      if (seen.size > 5000) seen.clear();
      if (fresh.length) countsSoon();
    } catch (e) {
      if (failed(e)) return;
      await sleep(2000);
    }
  }
}

function addEvent(e) {
  let what = KIND_TEXT[e.Kind] ?? e.Kind;
  if (e.Kind === 'Kicked' || e.Kind === 'Disconnect') what += ` (${e.Reason})`;
  if (e.Kind === 'Login' && e.Kicked) what += `, kicking ${e.Kicked}`;
  const li = el('li', { class: e.Kind, dataset: { kind: e.Kind, reason: e.Reason, user: e.UserID, instance: e.Instance } },
    el('time', {}, time(e.Time)),
    el('strong', {}, e.UserID), ' ', el('span', { class: 'what' }, what),
    ' ', el('small', {}, `${e.Platform} ${e.Instance}${e.Node ? ` on ${e.Node}` : ''}`));
  const feed = $('feed');
  feed.prepend(li);
  while (feed.children.length > 300) feed.lastElementChild.remove();
}

function countsSoon() {
  if (countsDue) return;
  countsDue = setTimeout(() => { countsDue = null; loadCounts(generation); }, 700);
}

async function loadCounts(gen) {
  try {
    const { Minutes } = await rest('timd/get_event_counts');
    if (gen === generation) drawChart(Minutes);
  } catch (e) { failed(e); }
}

async function pollCounts(gen) {
  while (gen === generation) {
    await loadCounts(gen);
    await sleep(15000);
  }
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Bars of logins and kicks for each minute, oldest on the left. */
function drawChart(minutes) {
  const chart = $('chart');
  const [W, H, left, bottom, top] = [640, 170, 34, 20, 8];
  const max = Math.max(1, ...minutes.map((m) => Math.max(m.Logins, m.Kicks)));
  const step = (W - left - 4) / minutes.length;
  const bar = Math.max(1, step / 2 - 0.5);
  const y = (n) => H - bottom - (n / max) * (H - bottom - top);
  const parts = [
    svg('line', { class: 'axis', x1: left, y1: H - bottom, x2: W - 2, y2: H - bottom }),
    svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: H - bottom }),
    svg('text', { x: left - 4, y: top + 8, 'text-anchor': 'end' }, String(max)),
    svg('text', { x: left - 4, y: H - bottom, 'text-anchor': 'end' }, '0'),
  ];
  minutes.forEach((m, i) => {
    const x = left + 2 + i * step;
    for (const [kind, n, dx] of [['logins', m.Logins, 0], ['kicks', m.Kicks, bar]]) {
      if (!n) continue;
      const r = svg('rect', { class: kind, x: x + dx, y: y(n), width: bar, height: H - bottom - y(n), 'data-minute': m.Minute, 'data-count': n });
      r.append(svg('title', {}, `${time(m.Minute * 1000)}: ${n} ${kind}`));
      parts.push(r);
    }
  });
  for (const [i, label] of [[0, '−60 min'], [30, '−30 min'], [minutes.length - 1, 'now']]) {
    parts.push(svg('text', { x: left + 2 + i * step, y: H - 6, 'text-anchor': i ? 'middle' : 'start' }, label));
  }
  chart.replaceChildren(...parts);
  const logins = minutes.reduce((a, m) => a + m.Logins, 0);
  const kicks = minutes.reduce((a, m) => a + m.Kicks, 0);
  $('sum-logins').textContent = logins;
  $('sum-kicks').textContent = kicks;
  chart.dataset.logins = logins;
  chart.dataset.kicks = kicks;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- wiring -------------------------------------------------------------------------------

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  signIn({ sdkappid: $('in-sdkappid').value.trim(), admin: $('in-admin').value.trim(), usersig: $('in-usersig').value.trim() });
});
$('signout').addEventListener('click', () => signOut());
$('settings-form').addEventListener('submit', saveSettings);
$('lookup-form').addEventListener('submit', lookUp);
$('kick').addEventListener('click', askKick);
$('confirm').addEventListener('close', confirmed);

$('in-sdkappid').value = meta('timd-sdkappid');
if (meta('timd-demo') === '1') {
  // Demo mode (loopback only, the public demo key): the server signs an admin UserSig.
  const fill = $('demo-fill');
  fill.hidden = false;
  fill.addEventListener('click', async () => {
    const res = await fetch('/demo/admin-usersig', { cache: 'no-store' });
    const body = await res.json();
    if (!res.ok) { showError($('signin-error'), new RestError(body.code, body.message)); return; }
    $('in-sdkappid').value = body.SDKAppID;
    $('in-admin').value = body.userID;
    $('in-usersig').value = body.userSig;
  });
}
const saved = JSON.parse(sessionStorage.getItem(STORAGE) || 'null');
if (saved) signIn(saved);
window.consoleReady = true;
