-- A node's round (every lease/6), app-level: no user prelude, one key (one Redis Cluster slot).
-- KEYS[1] `tim:nodes` (node id -> until when its lease runs, Redis ms). ARGV[1] the node's
-- id, ARGV[2] the node lease (ms), ARGV[3] how long after its lease a dead node is reaped
-- (ms). Renews the node's lease, unless it already lapsed: a lapsed node may have been
-- treated as dead (its slots taken without a notice to it), so it is told to fence itself
-- instead, and goes on under a new id. Also the node's view of the cluster for the next
-- round's scripts (Redis's clock, the live nodes), the dead nodes awaiting their reaping,
-- and Redis's run id (a new one: Redis restarted and may have lost writes).
-- Returns {state ('ok' | 'new' | 'lapsed'), now_ms, run_id, live ids, dead ids}.
local NODES, ID = KEYS[1], ARGV[1]
local LEASE, REAP_AFTER = tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function num(x)
  return string.format('%.0f', x)
end
local prev = tonumber(redis.call('ZSCORE', NODES, ID) or '')
local state = 'ok'
if prev and prev < now then
  state = 'lapsed'
else
  if not prev then
    state = 'new'
  end
  redis.call('ZADD', NODES, num(now + LEASE), ID)
end
local live = redis.call('ZRANGEBYSCORE', NODES, num(now), '+inf')
local dead = redis.call('ZRANGEBYSCORE', NODES, '-inf', num(now - REAP_AFTER), 'LIMIT', 0, 4)
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
return { state, num(now), run_id, live, dead }
