-- Settles deliveries of one consumer. A delivery still in the in-flight hash is scheduled for
-- retry or dead-lettered first, and only then removed from the hash; one no longer there (settled
-- already, or reaped) is left alone: settling the same batch twice (after a lost reply) changes
-- nothing.
-- KEYS[1] in-flight (hash), KEYS[2] schedule (zset), KEYS[3] dead letters (list)
-- ARGV[1] dead-letter cap (0 = none, the default), then groups of four:
--   op ('a' ack, 'r' retry, 'd' dead-letter), delivery id, retry delay (ms, from now on the
--   server's clock), payload
-- Returns {deliveries settled, dead letters the cap trimmed}.
expect_type(KEYS[1], 'hash')
expect_type(KEYS[2], 'zset')
expect_type(KEYS[3], 'list')
local cap = tonumber(ARGV[1])
local now = now_ms()
local settled = 0
local dead = 0
for i = 2, #ARGV, 4 do
  local id = ARGV[i + 1]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    local op = ARGV[i]
    if op == 'r' then
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[i + 2]), ARGV[i + 3])
    elseif op == 'd' then
      redis.call('LPUSH', KEYS[3], ARGV[i + 3])
      dead = dead + 1
    end
    redis.call('HDEL', KEYS[1], id)
    settled = settled + 1
  end
end
local trimmed = 0
if dead > 0 and cap > 0 then
  trimmed = math.max(redis.call('LLEN', KEYS[3]) - cap, 0)
  redis.call('LTRIM', KEYS[3], 0, cap - 1)
end
return {settled, trimmed}
