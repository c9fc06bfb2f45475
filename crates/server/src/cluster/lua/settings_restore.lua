-- A node holds a newer version of an app's login settings than Redis does (Redis lost them,
-- or a node that started meanwhile stored its first ones): the highest version wins, so the
-- nodes converge on the last change an admin made. KEYS as settings_init.lua. ARGV: version,
-- web, other, policy, who. Returns 1 if it restored them, 0 if Redis had them already.
local S, H = KEYS[1], KEYS[2]
local stored = tonumber(redis.call('HGET', S, 'version') or '0') or 0
if stored >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', S, 'version', ARGV[1], 'web', ARGV[2], 'other', ARGV[3], 'policy', ARGV[4])
local t = redis.call('TIME')
redis.call('LPUSH', H, table.concat({ ARGV[1], t[1], ARGV[5], ARGV[2], ARGV[3], ARGV[4] }, '|'))
return 1
