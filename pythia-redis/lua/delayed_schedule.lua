-- Schedules delayed messages: each payload is kept in the hash of delayed messages under its
-- message id, and the schedule (a sorted set scored by due time in milliseconds) holds
-- 'delayed:<id>' for it, in one atomic step. An id already scheduled is replaced (new time,
-- new payload): scheduling the same message twice keeps one.
-- KEYS[1] schedule (zset), KEYS[2] delayed messages (hash id -> payload)
-- ARGV: groups of three: message id, due time (ms), payload
-- Returns how many ids were already scheduled (and so replaced).
expect_type(KEYS[1], 'zset')
expect_type(KEYS[2], 'hash')
local replaced = 0
for i = 1, #ARGV, 3 do
  if redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2]) == 0 then
    replaced = replaced + 1
  end
  redis.call('ZADD', KEYS[1], ARGV[i + 1], 'delayed:' .. ARGV[i])
end
return replaced
