-- Cleans one user of a dead node's index (`tim:node:<id>:users`): its dead slots go, as
-- the next script on the user would drop them (lazy expiry), for users nobody touches
-- again. Returns how many live instances the user still has.
local live = live_slots()
finish()
return done(#live, true)
