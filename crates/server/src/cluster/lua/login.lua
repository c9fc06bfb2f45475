-- A login: ARGV[4..] session, instance, platform, expire_at, sig_time, web limit, other
-- limit, policy, the client's address (for the callback). Refused if the UserSig predates the user's last REST kick; registers the
-- account; supersedes the same instance elsewhere (no kick: same tab or device); evicts the
-- earliest beyond each limit and policy group; admits the newcomer with the next login order.
-- Returns {'revoked'} or {'ok', since, new_account, kicked, mine, kicked platforms}.
local SID, INST, PLAT, EXPIRE_AT, SIG = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local WEB, OTHER, POLICY = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local IP = ARGV[12]
local k = kicked_at()
if k and tonumber(SIG) <= k then
  return done({ 'revoked' })
end
local new_account = redis.call('HSETNX', U, 'acct', num(now_s))
local others = {}
for _, e in ipairs(live_slots()) do
  if e.inst == INST then
    drop(INST, e.s)
    tomb(INST, e.s.since, 'R', e.s.platform)
    notify(e.s, 'S', '')
  else
    others[#others + 1] = e
  end
end
local gone = evictions(others, PLAT, WEB, OTHER, POLICY)
local gone_platforms = {}
for _, g in ipairs(gone) do
  local e = others[g[1]]
  kick(e.inst, e.s, g[2])
  gone_platforms[#gone_platforms + 1] = e.s.platform
end
local last = tonumber(redis.call('HGET', U, 'last') or '0') or 0
local since = num(math.max(now_ms, last + 1))
admit(INST, since, PLAT, SID, EXPIRE_AT, SIG)
-- Login/Register, with the platforms it kicked (KickedDevice; they get no event of their own).
report('in', NODE, SID, 'Login', 'Register', PLAT, PLAT, IP, gone_platforms)
finish()
return done({ 'ok', since, new_account, #gone, mine, gone_platforms })
