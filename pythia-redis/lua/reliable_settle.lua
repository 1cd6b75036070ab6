-- Settles deliveries of one consumer. Each delivery is removed from the in-flight hash first,
-- and only if that removal happened is it scheduled for retry or dead-lettered: settling the
-- same batch twice (after a lost reply) changes nothing.
-- KEYS[1] in-flight (hash), KEYS[2] schedule (zset), KEYS[3] dead letters (list)
-- ARGV[1] dead-letter cap (0 = none), then groups of four:
--   op ('a' ack, 'r' retry, 'd' dead-letter), delivery id, due time (ms), payload
local cap = tonumber(ARGV[1])
local settled = 0
local dead = 0
for i = 2, #ARGV, 4 do
  if redis.call('HDEL', KEYS[1], ARGV[i + 1]) == 1 then
    local op = ARGV[i]
    if op == 'r' then
      redis.call('ZADD', KEYS[2], ARGV[i + 2], ARGV[i + 3])
    elseif op == 'd' then
      redis.call('LPUSH', KEYS[3], ARGV[i + 3])
      dead = dead + 1
    end
    settled = settled + 1
  end
end
if dead > 0 and cap > 0 then
  redis.call('LTRIM', KEYS[3], 0, cap - 1)
end
return settled
