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
  -- A connected instance's end is reported here, with the kick (Logout/Unregister by
  -- RESTAPI; EventID `<app>-rk-<node>-<session>`), and its node told so (notice kind 'R':
  -- its socket stores nothing). One away gets no event of its own (its Disconnect was).
  local kind = 'K'
  if reports() and e.s.attached == '1' then
    report('rk', e.s.node, e.s.session, 'Logout', 'Unregister', e.s.platform, 'RESTAPI', '')
    kind = 'R'
  end
  drop(e.inst, e.s)
  tomb(e.inst, e.s.since, 'REST_API_Kick', e.s.platform)
  notify(e.s, kind, 'REST_API_Kick')
  online = online + 1
end
finish()
return done({ 'ok', online, mine })
