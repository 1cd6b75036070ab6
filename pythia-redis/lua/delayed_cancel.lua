-- Cancels a delayed message by its id, atomically: it leaves the schedule and the hash of
-- delayed messages together, so it can never be promoted afterwards.
-- KEYS[1] schedule (zset), KEYS[2] delayed messages (hash id -> payload)
-- ARGV[1] message id
-- Returns 1 if it was scheduled, 0 if not (never scheduled, cancelled, or already promoted).
local removed = redis.call('ZREM', KEYS[1], 'delayed:' .. ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return removed
