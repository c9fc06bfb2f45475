-- Shared by every decision script (prepended to each). One user's keys, all under one hash
-- tag so that a script touches one Redis Cluster slot:
--   KEYS[1] user hash   acct (created, unix s), kick (last REST kick/delete, unix s),
--                       last (the user's fencing counter: last login order, ms), wm
--   KEYS[2] zset        instance -> login order (earliest first)
--   KEYS[3] slot hash   instance -> since|platform|node|session|at_ms|expire_at|sig_time|attached
--                       (at_ms: when `node` took the slot, Redis time)
--   KEYS[4] tomb hash   instance -> since|end|until_s|platform|at_ms  (the instance's last
--                       ended session; platform and at_ms feed the kick feed)
--   KEYS[5] outbox hash  writes to other slots not confirmed yet (`later` below): the
--                       write (JSON array: command, key, args) -> when it was decided (ms)
-- ARGV[1] this node's id, ARGV[2] how long a tombstone is kept (s), ARGV[3] the calling
-- node's view of the cluster: `lease_ms|view_at_ms|node,node,...|app,app,...` (the session lease, when
-- the node read the live nodes from `tim:nodes`, and those live nodes; then the apps whose
-- State.StateChange callback the node has on, `app,app,...`); each script's own
-- arguments follow. Time is Redis's own clock (TIME): one clock for all nodes.
--
-- Liveness is per node, not per slot: a slot is live while its node is. The script never
-- reads `tim:nodes` (another Redis Cluster slot); it trusts the caller's view (refreshed
-- every node round): a slot's node is live if it is in the view, or if the slot was taken
-- after the view was read (a node that joined since). A node missing from a view read after
-- the slot was taken had let its lease lapse, and a node whose lease lapsed has fenced
-- itself (closed its sessions) and goes on under a new id: such a slot is free. A stale
-- view only keeps a node that died since live a little longer.
local U, I, S, T, O = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local NODE, TOMB_SECS = ARGV[1], tonumber(ARGV[2])
local LEASE, VIEW_AT, LIVE, CALLBACKS_ON = 0, 0, {}, {}
do
  local view = {}
  for part in string.gmatch(ARGV[3] .. '|', '([^|]*)|') do
    view[#view + 1] = part
  end
  LEASE, VIEW_AT = tonumber(view[1]), tonumber(view[2])
  for id in string.gmatch(view[3] or '', '[^,]+') do
    LIVE[id] = true
  end
  for app in string.gmatch(view[4] or '', '[^,]+') do
    CALLBACKS_ON[app] = true
  end
end
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now_ms = now_s * 1000 + math.floor(tonumber(clock[2]) / 1000)
local MAX_TOMBS = 64
-- What an overflow trims the tombstones down to: the full read and sort runs once per
-- MAX_TOMBS - KEEP_TOMBS new tombstones, not on every login (amortised upkeep).
local KEEP_TOMBS = 32

local function num(x)
  return string.format('%.0f', x)
end

local function split(v)
  local f = {}
  for part in string.gmatch(v .. '|', '([^|]*)|') do
    f[#f + 1] = part
  end
  return f
end

local function parse_slot(v)
  if not v then
    return nil
  end
  local f = split(v)
  return { since = f[1], platform = f[2], node = f[3], session = f[4], at = tonumber(f[5]),
    expire_at = f[6], sig_time = f[7], attached = f[8] }
end

local function put_slot(inst, s)
  redis.call('HSET', S, inst, table.concat({ s.since, s.platform, s.node, s.session,
    num(s.at), s.expire_at, s.sig_time, s.attached }, '|'))
end

-- Is the node holding slot `s` alive (see the view above)?
local function slot_live(s)
  return s.node == NODE or LIVE[s.node] or (s.at or 0) >= VIEW_AT
end

-- Writes to keys of other slots (a node's stream, a node's user index): a script may only
-- touch its user's slot (Redis Cluster), so it hands them back to the node that ran it, in
-- its reply (`done`), and that node makes them right after (`Cluster::write_deferred`): the
-- two-step path, the same on every topology. `later(durable, command, key, args...)`.
-- A durable write is also kept in the user's outbox (O) until its node confirms it (HDEL):
-- if that node dies or loses Redis between the steps, every later script on the user hands
-- back the ones older than REDELIVER_MS again, and the reaper of the dead node (which had
-- the user in its index: the node adds it before the script) all of them. Writes must be
-- harmless twice (a notice for a session no longer held is a no-op).
local AFTER = {}
-- This script's own durable writes (already in AFTER: not handed back twice by `done`).
local OWN = {}
local REDELIVER_MS = 5000
local function later(durable, ...)
  local w = { ... }
  local marker = ''
  if durable then
    marker = cjson.encode(w)
    OWN[marker] = true
    -- When it was decided, and its place among this script's writes (`ms.nnn`): writes
    -- handed back again go in the order they were decided (callback events per user).
    redis.call('HSET', O, marker, num(now_ms) .. string.format('.%03d', (#AFTER + 1) % 1000))
    redis.call('EXPIRE', O, TOMB_SECS)
  end
  table.insert(w, 1, marker)
  AFTER[#AFTER + 1] = w
end

-- The per-node index of the users a node holds slots of (`APP:USER` members): what a
-- live node reads to clean a dead node's slots up (`reap.lua`). Its key is
-- `tim:node:<id>:users`, on another slot: a node adds the user itself before a script that
-- may admit or kick; a script hands back the removals (`later`).
local USER_TAG = string.match(U, '^tim:{(.*)}:u$')
local function index_key(node)
  return 'tim:node:' .. node .. ':users'
end
-- Nodes that lost a slot in this script: their index drops the user if it was the last
-- (`dropped`: those `finish` handed back).
local left, dropped = {}, {}

local function parse_tomb(v)
  if not v then
    return nil
  end
  local f = split(v)
  return { since = tonumber(f[1]), why = f[2], till = tonumber(f[3]), platform = f[4],
    at = tonumber(f[5]) }
end

-- The user's last REST kick (unix s), or nil.
local function kicked_at()
  return tonumber(redis.call('HGET', U, 'kick') or '')
end

-- Below this login order, ended sessions may have been forgotten (tombstone overflow).
local function watermark()
  return tonumber(redis.call('HGET', U, 'wm') or '0') or 0
end

-- Remembers how `inst`'s session `since` ended: a kick reason, 'L' (logged out) or
-- 'R' (replaced by a newer login of the same instance). Bounded per user: beyond
-- MAX_TOMBS, the expired ones go and the oldest down to KEEP_TOMBS (the watermark remembers
-- the latest login order forgotten).
local function tomb(inst, since, why, platform)
  redis.call('HSET', T, inst, table.concat({ since, why, num(now_s + TOMB_SECS), platform or '',
    num(now_ms) }, '|'))
  redis.call('EXPIRE', T, TOMB_SECS)
  if redis.call('HLEN', T) <= MAX_TOMBS then
    return
  end
  local all = redis.call('HGETALL', T)
  local live = {}
  for k = 1, #all, 2 do
    local t = parse_tomb(all[k + 1])
    if t.till <= now_s then
      redis.call('HDEL', T, all[k])
    else
      live[#live + 1] = { all[k], t.since }
    end
  end
  if #live > KEEP_TOMBS then
    table.sort(live, function(a, b) return a[2] < b[2] end)
    local wm = watermark()
    for n = 1, #live - KEEP_TOMBS do
      redis.call('HDEL', T, live[n][1])
      if live[n][2] > wm then
        wm = live[n][2]
      end
    end
    redis.call('HSET', U, 'wm', num(wm))
  end
end

-- The State.StateChange callbacks (the shape of callbacks/mod.rs's StateChange), made by
-- the script that decides what they report, so an event is stored with its decision: each
-- is handed to the calling node for the app's callback stream `tim:cb:{APP}` (another
-- slot: a durable `later`, kept in the user's outbox until written, so a node dying before
-- it writes does not lose it; the node writes it before it answers the client, and the
-- scripts on one user run one at a time on its slot: the user's order is kept). Only when
-- the calling node has the app's callback on (the view's fourth field lists those apps:
-- `tim:cb:{APP}:on` is on the app's slot). Each event has its own EventID,
-- `<app>-<kind>-<node>-<session>` (session ids are unique per node id), the same if the
-- write is made twice.
local CB_APP, CB_USER = string.match(USER_TAG or '', '^(%d+):(.*)$')
local function reports()
  return CB_APP ~= nil and CALLBACKS_ON[CB_APP] == true
end
local function report(kind, node, session, action, reason, platform, op, ip, kicked)
  if not reports() then
    return
  end
  local e = { id = CB_APP .. '-' .. kind .. '-' .. node .. '-' .. session, u = CB_USER,
    a = action, r = reason, p = platform, op = op, ip = ip or '', t = now_ms }
  if kicked and #kicked > 0 then
    e.k = kicked
  end
  later(true, 'XADD', 'tim:cb:{' .. CB_APP .. '}', 'MAXLEN', '~', 10000000, '*', 'e',
    cjson.encode(e))
end

-- A session whose node died while it was connected: Disconnect/TimeOut, by whichever script
-- or reaper drops its slot (EventID `<app>-to-<node>-<session>`).
local function report_timeout(s)
  if s.attached ~= '1' then
    return
  end
  report('to', s.node, s.session, 'Disconnect', 'TimeOut', s.platform, 'Unknown', '')
end

-- The user's live instances, earliest login first, as {inst=, s=}. Slots whose node is
-- dead are dropped here: lazy expiry (and `reap.lua` for users nobody touches again).
local function live_slots()
  local out = {}
  for _, inst in ipairs(redis.call('ZRANGE', I, 0, -1)) do
    local s = parse_slot(redis.call('HGET', S, inst))
    if s and slot_live(s) then
      out[#out + 1] = { inst = inst, s = s }
    else
      redis.call('ZREM', I, inst)
      redis.call('HDEL', S, inst)
      if s then
        left[s.node] = true
        report_timeout(s)
      end
    end
  end
  return out
end

-- The login policy (policy.rs, the same table): must an instance on `existing` go when one
-- on `new` logs in?
local MOBILE = { Android = true, iPhone = true, iPad = true }
local DESKTOP = { Windows = true, Mac = true }
local function conflicts(policy, existing, new)
  if existing == new then
    return false
  end
  if policy == 'single' then
    return true
  elseif policy == 'dual' then
    return existing ~= 'Web' and new ~= 'Web'
  elseif policy == 'triple' then
    return (MOBILE[existing] and MOBILE[new]) or (DESKTOP[existing] and DESKTOP[new]) or false
  end
  return false
end

-- Which of `live` (earliest first) must go for a newcomer on `platform`, as {index, reason}:
-- every conflicting platform (multipleDevice), then the earliest on its own platform beyond
-- the limit (multipleAccount). As LoginSettings::evictions.
local function evictions(live, platform, web_limit, other_limit, policy)
  local out, same = {}, {}
  for n, e in ipairs(live) do
    if conflicts(policy, e.s.platform, platform) then
      out[#out + 1] = { n, 'multipleDevice' }
    elseif e.s.platform == platform then
      same[#same + 1] = n
    end
  end
  local limit = other_limit
  if platform == 'Web' then
    limit = web_limit
  end
  for k = 1, #same + 1 - limit do
    out[#out + 1] = { same[k], 'multipleAccount' }
  end
  return out
end

-- Why a session that must not come back was refused: multipleDevice wins.
local function refusal(gone)
  for _, g in ipairs(gone) do
    if g[2] == 'multipleDevice' then
      return 'multipleDevice'
    end
  end
  return gone[1][2]
end

-- Victims on this node, returned to the caller as {kind, session, reason}...; the others
-- are appended to their node's stream `tim:node:<id>:k` ('K' kicked, 'R' kicked with its callback event stored, 'S' superseded) by the
-- calling node right after the script (a durable `later`: kept in the user's outbox until
-- written, so a notice outlives the deciding node): the victim's node reads its stream with
-- a cursor, and nothing is lost if its connection drops. A dead node is told nothing (it
-- fenced itself).
local mine = {}
local function notify(s, kind, reason)
  if s.node == NODE then
    mine[#mine + 1] = kind
    mine[#mine + 1] = s.session
    mine[#mine + 1] = reason
  elseif slot_live(s) then
    later(true, 'XADD', 'tim:node:' .. s.node .. ':k', '*', 'n',
      kind .. '|' .. s.session .. '|' .. reason)
  end
end

-- Drops `inst`'s slot `s` (as read by the caller).
local function drop(inst, s)
  left[s.node] = true
  redis.call('ZREM', I, inst)
  redis.call('HDEL', S, inst)
end

local function kick(inst, s, reason)
  drop(inst, s)
  tomb(inst, s.since, reason, s.platform)
  notify(s, 'K', reason)
end

local function admit(inst, since, platform, session, expire_at, sig_time, attached)
  -- A session registered again after Redis lost its data (a resume, a renewal) has an
  -- account: REST kicks and deletions of its user must find it.
  redis.call('HSETNX', U, 'acct', num(now_s))
  redis.call('ZADD', I, since, inst)
  put_slot(inst, { since = since, platform = platform, node = NODE, session = session,
    at = now_ms, expire_at = expire_at, sig_time = sig_time, attached = attached or '1' })
  local last = tonumber(redis.call('HGET', U, 'last') or '0') or 0
  if tonumber(since) > last then
    redis.call('HSET', U, 'last', since)
  end
end

-- Empty sets go. Live ones never expire (no per-session renewal keeps them alive: the
-- keys of an online user stay while it is online); a dead node's are cleaned lazily by the
-- next script on the user, or by `reap.lua`. A node that lost its last slot of the user
-- here leaves the user out of its index.
local function finish()
  if redis.call('ZCARD', I) == 0 then
    redis.call('DEL', I, S)
  elseif next(left) ~= nil then
    for _, v in ipairs(redis.call('HVALS', S)) do
      local s = parse_slot(v)
      if s then
        left[s.node] = nil
      end
    end
  end
  for node in pairs(left) do
    later(false, 'SREM', index_key(node), USER_TAG)
    dropped[node] = true
  end
  left = {}
end

-- Is a write handed back earlier still wanted: a notice for a node that has died since is
-- dropped (its stream is reaped; the node fenced itself), as `slot_live` decides.
local function still_wanted(w, at)
  local node = string.match(w[2] or '', '^tim:node:(.*):k$')
  return not node or node == NODE or LIVE[node] or at >= VIEW_AT
end

-- Every script's reply: {reply, writes to other slots}, each write {marker, command, key,
-- args...} (marker '' for a write nobody waits for). With it, the durable writes still in
-- the outbox: older than REDELIVER_MS, or all of them (`all`: the reaper of a dead node).
-- The calling node (without a slot of the user now) also drops the user from its index.
local function done(reply, all)
  if redis.call('EXISTS', O) == 1 then
    local pending = redis.call('HGETALL', O)
    local again = {}
    for k = 1, #pending, 2 do
      local at = tonumber(pending[k + 1]) or 0
      local w = cjson.decode(pending[k])
      if OWN[pending[k]] then
        -- made by this script: already handed back
      elseif not still_wanted(w, at) then
        redis.call('HDEL', O, pending[k])
      elseif all or at <= now_ms - REDELIVER_MS then
        table.insert(w, 1, pending[k])
        again[#again + 1] = { at, w }
      end
    end
    -- Older decisions first, before this script's own writes (the node writes a key's
    -- writes in this order).
    table.sort(again, function(a, b) return a[1] < b[1] end)
    for n = #again, 1, -1 do
      table.insert(AFTER, 1, again[n][2])
    end
  end
  local holds = false
  for _, v in ipairs(redis.call('HVALS', S)) do
    local s = parse_slot(v)
    if s and s.node == NODE then
      holds = true
      break
    end
  end
  if not holds and not dropped[NODE] then
    later(false, 'SREM', index_key(NODE), USER_TAG)
  end
  return { reply, AFTER }
end
