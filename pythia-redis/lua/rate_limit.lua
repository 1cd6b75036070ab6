-- Grants tokens of a queue's rate limit to one replica: GCRA (the generic cell rate algorithm)
-- on the server's clock, so that every replica draws on one budget whatever its own clock says.
-- The state is one string, the theoretical arrival time (TAT): the time, in ms, at which the
-- budget would be back to full if nothing more were taken. A replica asks for a batch of
-- tokens at once, so the script runs once per batch, not once per message.
-- KEYS[1] the limiter's state (string)
-- ARGV[1] emission interval in ms (the period divided by the limit; may be fractional)
-- ARGV[2] burst: tokens the budget holds when full (at least 1)
-- ARGV[3] tokens wanted (at least 1)
-- ARGV[4] fewest tokens worth granting (at least 1): with less room the caller waits until there
--         is that much, so replicas racing for the budget do not split it into one-token grants
--         (one script call per message)
-- Returns {tokens granted (0 or least..wanted), ms to wait before asking again when 0}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local least = math.min(want, tonumber(ARGV[4]))
-- A key of another type fails here, before any write.
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then
  tat = now
end
-- The TAT may run ahead of now by at most burst * interval: that is the budget left.
local room = math.floor((now + burst * interval - tat) / interval + 1e-9)
if room < least then
  -- room >= least once now >= tat + (least - burst) * interval
  return {0, math.max(1, math.ceil(tat + (least - burst) * interval - now))}
end
local granted = math.min(want, room)
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return {granted, 0}
