-- A change of an app's login settings (set_login_settings). KEYS as settings_init.lua.
-- ARGV: web, other, policy (each '' = unchanged; each already checked), admin, apply_now
-- ('1' or '0'), the app's SDKAppID, how many history entries to keep, then the calling node's
-- version, web, other and policy in force: if Redis lost the hash (a flush), the change
-- builds on those and its version stays above every node's. Bumps the version,
-- records the change and announces it on 'tim:settings' (nodes also poll the version: a
-- lost message only delays a node by one node round). Returns {version, web, other, policy}.
local S, H = KEYS[1], KEYS[2]
local cur = redis.call('HMGET', S, 'version', 'web', 'other', 'policy')
if not cur[1] then
  cur = { ARGV[8], ARGV[9], ARGV[10], ARGV[11] }
end
local version = math.max(tonumber(cur[1]) or 0, tonumber(ARGV[8]) or 0) + 1
local function pick(new, old)
  if new ~= '' then
    return new
  end
  return old
end
local web, other, policy = pick(ARGV[1], cur[2]), pick(ARGV[2], cur[3]), pick(ARGV[3], cur[4])
redis.call('HSET', S, 'version', version, 'web', web, 'other', other, 'policy', policy)
if ARGV[5] == '1' then
  redis.call('HSET', S, 'enforce', version)
end
local t = redis.call('TIME')
redis.call('LPUSH', H, table.concat({ version, t[1], ARGV[4], web, other, policy }, '|'))
redis.call('LTRIM', H, 0, tonumber(ARGV[7]) - 1)
redis.call('PUBLISH', 'tim:settings', ARGV[6] .. '|' .. version)
return { version, web, other, policy }
