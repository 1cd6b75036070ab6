-- Moves retries whose time has come from the schedule (a sorted set scored by due time in
-- milliseconds) to the back of the queue, atomically: a retry is never lost or doubled even
-- when several workers promote at once.
-- KEYS[1] schedule (zset), KEYS[2] queue (list)
-- ARGV[1] now (ms), ARGV[2] at most this many, ARGV[3] 'L' to LPUSH, 'R' to RPUSH
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due == 0 then
  return 0
end
redis.call('ZREM', KEYS[1], unpack(due))
if ARGV[3] == 'L' then
  redis.call('LPUSH', KEYS[2], unpack(due))
else
  redis.call('RPUSH', KEYS[2], unpack(due))
end
return #due
