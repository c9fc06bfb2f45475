-- An app's login settings at a node's start (not part of the user prelude: app keys only).
-- KEYS[1] settings hash (version, web, other, policy, enforce: the last version set with
-- ApplyNow), KEYS[2] history list (newest first: version|time|who|web|other|policy).
-- ARGV: web, other, policy (the node's configured first settings), who ('(flags)' or
-- '(apps file)'), the app's SDKAppID.
-- None stored: these become version 1. Stored, but by a configuration (the last change's
-- `who` is one) and different: the configuration changed, no admin has changed them since,
-- so these become the next version (announced on 'tim:settings'). Stored by an admin: kept
-- (a restart never undoes an API change). Returns {version, web, other, policy, enforce}.
local S, H = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local function store(version)
  redis.call('HSET', S, 'version', version, 'web', ARGV[1], 'other', ARGV[2], 'policy', ARGV[3])
  redis.call('LPUSH', H, table.concat({ version, t[1], ARGV[4], ARGV[1], ARGV[2], ARGV[3] }, '|'))
end
if redis.call('EXISTS', S) == 0 then
  store(1)
  redis.call('HSET', S, 'enforce', 0)
else
  local cur = redis.call('HMGET', S, 'version', 'web', 'other', 'policy')
  local last = redis.call('LINDEX', H, 0) or ''
  local who = string.match(last, '^[^|]*|[^|]*|([^|]*)|') or ''
  local configured = who == '(flags)' or who == '(apps file)'
  if configured and (cur[2] ~= ARGV[1] or cur[3] ~= ARGV[2] or cur[4] ~= ARGV[3]) then
    local version = (tonumber(cur[1]) or 0) + 1
    store(version)
    redis.call('PUBLISH', 'tim:settings', ARGV[5] .. '|' .. version)
  end
end
return redis.call('HMGET', S, 'version', 'web', 'other', 'policy', 'enforce')
