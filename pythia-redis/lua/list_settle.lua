-- Schedules retries and dead-letters messages of the at-most-once list broker (the items left the
-- queue when they were popped; acks need nothing).
-- KEYS[1] schedule (zset), KEYS[2] dead letters (list)
-- ARGV[1] dead-letter cap (0 = none, the default), then pairs of: retry delay in ms from now on the server's
-- clock ('d' to dead-letter instead), payload
-- Returns {how many were written, dead letters the cap trimmed}.
expect_type(KEYS[1], 'zset')
expect_type(KEYS[2], 'list')
local cap = tonumber(ARGV[1])
local now = now_ms()
local dead = 0
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'd' then
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
    dead = dead + 1
  else
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i]), ARGV[i + 1])
  end
end
local trimmed = 0
if dead > 0 and cap > 0 then
  trimmed = math.max(redis.call('LLEN', KEYS[2]) - cap, 0)
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
end
return {(#ARGV - 1) / 2, trimmed}
