-- A node registers again what it holds of one user, after Redis lost data (its node entry
-- vanished, or Redis restarted: a new run id) — once, not periodically (liveness is per
-- node: `node_round.lua`). ARGV[4..] web limit, other limit, policy, then per session it
-- holds: session, instance, platform, since, expire_at, sig_time, attached.
-- Keeps each that is still its own; reports the others (kicked or superseded meanwhile);
-- registers again what Redis no longer knows if that evicts no one.
-- Returns {registered_again, {session, 'K'|'S', reason}...}.
local WEB, OTHER, POLICY = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local k = kicked_at()
local out, again = {}, 0
for n = 7, #ARGV, 7 do
  local sid, inst, plat, since = ARGV[n], ARGV[n + 1], ARGV[n + 2], ARGV[n + 3]
  local exp, sig, att = ARGV[n + 4], ARGV[n + 5], ARGV[n + 6]
  local s = parse_slot(redis.call('HGET', S, inst))
  if s and s.node == NODE and s.session == sid then
    s.attached = att
    put_slot(inst, s)
  elseif s and tonumber(s.since) == tonumber(since) then
    -- Resumed on another socket meanwhile.
    out[#out + 1] = { sid, 'S', '' }
  else
    local why
    if k and tonumber(sig) <= k then
      why = 'REST_API_Kick'
    end
    local t = parse_tomb(redis.call('HGET', T, inst))
    if not why and t and t.since >= tonumber(since) then
      why = ''
      if t.since == tonumber(since) and t.why ~= 'L' and t.why ~= 'R' then
        why = t.why
      end
    end
    if not why and (s or tonumber(since) <= watermark()) then
      why = ''
    end
    if not why then
      local gone = evictions(live_slots(), plat, WEB, OTHER, POLICY)
      if #gone > 0 then
        why = refusal(gone)
        tomb(inst, since, why, plat)
      else
        admit(inst, since, plat, sid, exp, sig, att)
        again = again + 1
      end
    end
    if why == '' then
      out[#out + 1] = { sid, 'S', '' }
    elseif why then
      out[#out + 1] = { sid, 'K', why }
    end
  end
end
finish()
return done({ again, out })
