-- An app's login settings, stored once (not part of the user prelude: app keys only).
-- KEYS[1] settings hash (version, web, other, policy, enforce: the last version applied
-- with ApplyNow), KEYS[2] history list (newest first: version|time|admin|web|other|policy).
-- ARGV: web, other, policy, who (the origin of these first settings).
-- Stores them as version 1 unless the app has settings already. Returns the stored ones:
-- {version, web, other, policy, enforce}.
local S, H = KEYS[1], KEYS[2]
if redis.call('EXISTS', S) == 0 then
  local t = redis.call('TIME')
  redis.call('HSET', S, 'version', 1, 'web', ARGV[1], 'other', ARGV[2], 'policy', ARGV[3],
    'enforce', 0)
  redis.call('LPUSH', H, table.concat({ 1, t[1], ARGV[4], ARGV[1], ARGV[2], ARGV[3] }, '|'))
end
return redis.call('HMGET', S, 'version', 'web', 'other', 'policy', 'enforce')
