-- One session of this node changes: ARGV[4..] session, instance, what, then for 'renew'
-- expire_at and sig_time, for the others since, platform, the client's address and '1' if
-- a connected socket acted. The State.StateChange callback, stored here with the change: a
-- logout is reported Logout/Unregister (also one written late), an expiry of a connected
-- session Logout/Unregister by Unknown (one while away has no event of its own: its
-- Disconnect was), whether or not the slot was still this session's; EventID
-- `<app>-out-<node>-<session>`, the same when a logout is written again. An 'orphan' (a
-- login or resume whose answer never came, released) that still held its slot is reported
-- Disconnect/TimeOut (its Login was stored by its script). what: 'logout' (ends; its
-- tickets die), 'expired' (its UserSig ran out: kicked userSigExpired), 'release' (away
-- past its grace: the slot is freed), 'orphan' (freed, as 'release'), 'away' (its socket
-- closed; it waits for a resume), 'renew' (a fresh UserSig).
-- Only if the slot is still this node's session. Returns 1 if it was, 0 otherwise (2: a
-- revoked renewal). A
-- logout is recorded even if it was not (the slot lapsed, or Redis lost it, while the node
-- could not reach Redis): its tombstone ends the session's tickets, unless a newer session
-- of the instance exists; one resumed elsewhere meanwhile is superseded.
local SID, INST, WHAT = ARGV[4], ARGV[5], ARGV[6]
if WHAT == 'logout' then
  report('out', NODE, SID, 'Logout', 'Unregister', ARGV[8], ARGV[8], ARGV[9])
elseif WHAT == 'expired' and ARGV[10] == '1' then
  report('out', NODE, SID, 'Logout', 'Unregister', ARGV[8], 'Unknown', ARGV[9])
end
local s = parse_slot(redis.call('HGET', S, INST))
if not s or s.node ~= NODE or s.session ~= SID then
  if WHAT == 'logout' then
    local since = tonumber(ARGV[7])
    local t = parse_tomb(redis.call('HGET', T, INST))
    if not (t and t.since >= since) and not (s and tonumber(s.since) > since) then
      if s then
        drop(INST, s)
        notify(s, 'S', '')
      end
      tomb(INST, num(since), 'L', ARGV[8])
      finish()
    end
  end
  return done(0)
end
-- A renewal's UserSig issued at or before the user's last REST kick is refused (2): the
-- session goes on with the UserSig it has.
if WHAT == 'renew' then
  local k = kicked_at()
  if k and tonumber(ARGV[8]) <= k then
    return done(2)
  end
end
if WHAT == 'away' or WHAT == 'renew' then
  if WHAT == 'away' then
    s.attached = '0'
  else
    s.expire_at, s.sig_time = ARGV[7], ARGV[8]
  end
  put_slot(INST, s)
else
  drop(INST, s)
  if WHAT == 'orphan' and s.attached == '1' then
    report('to', NODE, SID, 'Disconnect', 'TimeOut', s.platform, 'Unknown', '')
  end
  if WHAT == 'logout' then
    tomb(INST, s.since, 'L', s.platform)
  elseif WHAT == 'expired' then
    tomb(INST, s.since, 'userSigExpired', s.platform)
  end
end
finish()
return done(1)
