-- A resume with a verified ticket: ARGV[4..] session, instance, platform, since, expire_at,
-- sig_time, web limit, other limit, policy, the ticket's valid_until (unix s), the client's
-- address (for the callback: a resume is reported Login/Register). Never evicts anyone: takes its own slot back
-- (from another node too), or comes back if it fits, or learns why it may not.
-- Returns {'ok', since, expire_at, sig_time, mine}, {'kicked', reason}, {'replaced'} or
-- {'ended'}.
local SID, INST, PLAT, SINCE, EXPIRE_AT, SIG = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local WEB, OTHER, POLICY = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12]
local VALID_UNTIL = tonumber(ARGV[13])
local IP = ARGV[14]
local since = tonumber(SINCE)
local k = kicked_at()
if k and tonumber(SIG) <= k then
  return done({ 'kicked', 'REST_API_Kick' })
end
local t = parse_tomb(redis.call('HGET', T, INST))
if t and t.since == since then
  if t.why == 'L' then
    return done({ 'ended' })
  elseif t.why == 'R' then
    return done({ 'replaced' })
  end
  return done({ 'kicked', t.why })
elseif t and t.since > since then
  return done({ 'replaced' })
end
-- Tickets die with their lifetime too, whatever the UserSig's.
if VALID_UNTIL <= now_s then
  return done({ 'ended' })
end
local live = live_slots()
for _, e in ipairs(live) do
  if e.inst == INST then
    if tonumber(e.s.since) ~= since then
      return done({ 'replaced' })
    end
    if not (e.s.node == NODE and e.s.session == SID) then
      notify(e.s, 'S', '')
    end
    left[e.s.node] = true
    e.s.node, e.s.session, e.s.at, e.s.attached = NODE, SID, now_ms, '1'
    put_slot(INST, e.s)
    report('in', NODE, SID, 'Login', 'Register', PLAT, PLAT, IP)
    finish()
    return done({ 'ok', e.s.since, e.s.expire_at, e.s.sig_time, mine })
  end
end
if since <= watermark() then
  return done({ 'ended' })
end
-- Coming back without a slot. Right after Redis (re)started, what it has may predate ends
-- a node could not write while Redis was down (a logout answered 70169): every node writes
-- those first thing each node round, so coming back waits one lease (retry later; whole
-- seconds of uptime: at least one lease).
local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
if up and up * 1000 < LEASE then
  return done({ 'busy' })
end
local gone = evictions(live, PLAT, WEB, OTHER, POLICY)
if #gone > 0 then
  return done({ 'kicked', refusal(gone) })
end
admit(INST, SINCE, PLAT, SID, EXPIRE_AT, SIG)
report('in', NODE, SID, 'Login', 'Register', PLAT, PLAT, IP)
finish()
return done({ 'ok', SINCE, EXPIRE_AT, SIG, mine })
