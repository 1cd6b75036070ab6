-- One poll of a queue's gate (see src/gate/mod.rs): is the queue paused, and for how much longer
-- is it throttled? Optionally first extends the throttle, never shortening one another replica set.
-- KEYS[1] paused flag (any value = paused), KEYS[2] throttle (a string with a TTL)
-- ARGV[1] throttle to set, in ms (0: none)
-- Returns {paused (0/1), throttle left in ms (0: none)}
expect_type(KEYS[2], 'string')
local want = tonumber(ARGV[1])
if want > 0 and redis.call('PTTL', KEYS[2]) < want then
  redis.call('SET', KEYS[2], '1', 'PX', want)
end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then
  left = 0
end
return {redis.call('EXISTS', KEYS[1]), left}
