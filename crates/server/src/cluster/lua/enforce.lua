-- A login-settings change applied now (ApplyNow): ARGV[4..] web limit, other limit, policy.
-- Kicks every live instance the settings no longer allow, as LoginSettings::over_limits:
-- the latest logins stay as if each had logged in in turn; an earlier one that conflicts
-- with a later one's platform goes with multipleDevice, beyond a platform's limit the
-- earliest go with multipleAccount. Each connected instance kicked is reported
-- (State.StateChange Logout/Unregister by RESTAPI). Returns {kicked, mine}.
local WEB, OTHER, POLICY = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local live = live_slots()
local kept, gone = {}, {}
for n = #live, 1, -1 do
  local p = live[n].s.platform
  local why = nil
  local same = 0
  for _, k in ipairs(kept) do
    if conflicts(POLICY, p, k) then
      why = 'multipleDevice'
    elseif k == p then
      same = same + 1
    end
  end
  local limit = OTHER
  if p == 'Web' then
    limit = WEB
  end
  if not why and same >= limit then
    why = 'multipleAccount'
  end
  if why then
    gone[#gone + 1] = { n, why }
  else
    kept[#kept + 1] = p
  end
end
for _, g in ipairs(gone) do
  local e = live[g[1]]
  -- A connected instance's end is reported here, with the kick (Logout/Unregister by
  -- RESTAPI: a REST call ended it; EventID `<app>-ak-<node>-<session>`), and its node told
  -- so (notice kind 'R'). One away gets no event of its own (its Disconnect was).
  if reports() and e.s.attached == '1' then
    report('ak', e.s.node, e.s.session, 'Logout', 'Unregister', e.s.platform, 'RESTAPI', '')
    drop(e.inst, e.s)
    tomb(e.inst, e.s.since, g[2], e.s.platform)
    notify(e.s, 'R', g[2])
  else
    kick(e.inst, e.s, g[2])
  end
end
finish()
return done({ #gone, mine })
