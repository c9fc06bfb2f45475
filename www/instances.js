// The watched user's instances as the server holds them, polled every POLL_MS, rendered as a
// table; and the feed of what changed between two polls (logins, logouts, kicks). Kicks come
// from the server's own records (each with its reason and time); logins and logouts are
// derived from the instance list.
import { api } from './api.js';

export const POLL_MS = 400;

export const short = (id) => id.slice(0, 8);
export const clock = (ms) => {
  const d = new Date(ms);
  return `${d.toLocaleTimeString('en-GB', { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
};
const ago = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`;
};
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};

export class InstanceView {
  /**
   * table: the <table>; title: where the user's name goes; feed: a Feed;
   * isMine(instance): whether an instance is this tab; reasonText(reason): why such a kick;
   * stopDevice(instance): logs a demo device out.
   */
  constructor({ table, title, empty, feed, isMine, reasonText, stopDevice }) {
    Object.assign(this, { table, title, empty, feed, isMine, reasonText, stopDevice });
    this.user = null;
    this.prev = null;
    this.seenKicks = new Set();
    this.names = new Map(); // instance id -> how the feed names it
  }

  /** Shows `user` from now on (a new user starts a fresh view). */
  watch(user) {
    if (!user || user === this.user) return;
    this.user = user;
    this.prev = null;
    this.seenKicks = new Set();
    this.title.textContent = user;
    this.render([]);
    this.refresh();
  }

  /** Polls forever. */
  start() {
    const tick = () => this.refresh().finally(() => setTimeout(tick, POLL_MS));
    tick();
  }

  /** One poll at a time, so each diff compares a list with the one just before it. */
  async refresh() {
    const user = this.user;
    if (!user || this.busy) return;
    this.busy = true;
    try {
      const data = await api.instances(user);
      if (user !== this.user) return;
      this.render(data.instances, data.serverTime);
      this.diff(data);
    } catch (e) {
      this.empty.textContent = `cannot reach the server: ${e.message}`;
    } finally {
      this.busy = false;
    }
  }

  name(i) {
    const mine = this.isMine(i);
    const n = `${i.platform} ${short(i.instance)}${mine ? ' (this tab)' : i.demoDevice ? ' (demo device)' : ''}`;
    this.names.set(i.instance, n);
    return n;
  }

  render(instances, serverTime = Date.now()) {
    const body = this.table.tBodies[0];
    body.replaceChildren(...instances.map((i) => {
      const mine = this.isMine(i);
      const row = el('tr', { className: mine ? 'mine' : '' },
        el('td', {}, mine ? el('span', { className: 'badge this' }, 'this tab') : ''),
        el('td', {}, el('span', { className: `badge platform p-${i.platform}` }, i.platform)),
        el('td', { className: 'mono', title: i.instance }, short(i.instance)),
        el('td', {}, clock(i.since), el('small', {}, ` ${ago(serverTime - i.since)}`)),
        el('td', {}, el('span', { className: i.online ? 'dot on' : 'dot away' }), i.online ? 'online' : 'away'),
        el('td', {}, i.demoDevice
          ? el('button', { type: 'button', className: 'small', textContent: 'Log out', onclick: (e) => { e.target.disabled = true; this.stopDevice(i.instance); } })
          : ''));
      Object.assign(row.dataset, { instance: i.instance, platform: i.platform, this: mine ? '1' : '', online: i.online ? '1' : '' });
      return row;
    }));
    this.empty.textContent = instances.length ? '' : `${this.user} has no instance online.`;
  }

  /** Turns the change since the last poll into feed entries, in time order. */
  diff({ instances, kicks, serverTime }) {
    const key = (i) => `${i.instance}/${i.since}`;
    const now = new Map(instances.map((i) => [key(i), i]));
    if (this.prev === null) {
      for (const k of kicks) this.seenKicks.add(key(k));
      this.feed.add({ at: serverTime, kind: 'note', text: `${this.user}: ${instances.length} instance(s) online` });
      this.prev = now;
      return;
    }
    const entries = [];
    const kicked = new Set();
    for (const k of kicks) {
      if (this.seenKicks.has(key(k))) continue;
      this.seenKicks.add(key(k));
      kicked.add(key(k));
      const who = this.names.get(k.instance) ?? `${k.platform} ${short(k.instance)}`;
      entries.push({ at: k.at, order: 1, kind: 'kick', reason: k.reason,
        text: `${who} kicked out: ${k.reason}`, detail: this.reasonText(k.reason) });
    }
    for (const [k, i] of now) {
      const before = this.prev.get(k);
      if (!before) entries.push({ at: i.since, order: 0, kind: 'login', text: `${this.name(i)} logged in` });
      else if (before.online !== i.online) entries.push({ at: serverTime, order: 2, kind: 'note', text: `${this.name(i)} ${i.online ? 'is back online' : 'went away (connection lost; slot kept for a resume)'}` });
    }
    const ids = new Set(instances.map((i) => i.instance));
    for (const [k, i] of this.prev) {
      if (now.has(k) || kicked.has(k) || ids.has(i.instance)) continue;
      const who = this.names.get(i.instance) ?? this.name(i);
      entries.push({ at: serverTime, order: 2, kind: 'logout', text: i.online ? `${who} logged out` : `${who} gone (away too long)` });
    }
    entries.sort((a, b) => a.at - b.at || a.order - b.order);
    for (const e of entries) this.feed.add(e);
    this.prev = now;
  }
}

/** A list of happenings, newest first, bounded. */
export class Feed {
  constructor(list, max = 60) { this.list = list; this.max = max; }

  add({ at = Date.now(), kind = 'note', text, detail, reason }) {
    const item = el('li', { className: kind },
      el('time', {}, clock(at)), ' ',
      el('span', { className: 'what' }, text),
      detail ? el('small', {}, ` — ${detail}`) : null);
    if (reason) item.dataset.reason = reason;
    item.dataset.at = at;
    // Newest first: entries from polls and from this page's own calls interleave by time.
    const later = [...this.list.children].find((li) => Number(li.dataset.at) <= at);
    this.list.insertBefore(item, later ?? null);
    while (this.list.children.length > this.max) this.list.lastElementChild.remove();
  }
}
