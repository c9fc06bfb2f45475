-- REST kick or account_delete: ARGV[4..] at (the revocation time, unix s), what ('kick' or
-- 'delete'). Records the kick time (it only moves forward), deletes the account if asked,
-- and kicks every instance (REST_API_Kick), wherever its socket is.
-- Returns {'missing'} (no such account) or {'ok', online, mine}.
local AT, WHAT = tonumber(ARGV[4]), ARGV[5]
if redis.call('HEXISTS', U, 'acct') == 0 then
  return done({ 'missing' })
end
local k = kicked_at()
if not k or AT > k then
  redis.call('HSET', U, 'kick', num(AT))
end
if WHAT == 'delete' then
  redis.call('HDEL', U, 'acct')
end
local online = 0
for _, e in ipairs(live_slots()) do
  kick(e.inst, e.s, 'REST_API_Kick')
  online = online + 1
end
finish()
return done({ 'ok', online, mine })
