-- Fires one slot of a periodic job at most once: if the job's last fired slot is older than this
-- one, records this slot and enqueues the job's message, in one atomic step (compare-and-set).
-- Two schedulers that both think they lead, or a retry after a lost reply, fire it once.
-- KEYS[1] the job's last fired slot (string, ms), KEYS[2] the queue (list or stream)
-- ARGV[1] slot (ms), ARGV[2] TTL of the slot record (ms), ARGV[3] 'L' (LPUSH), 'R' (RPUSH) or
-- 'X' (XADD), ARGV[4] stream MAXLEN ~ (0 = none), ARGV[5] the list item, or ARGV[5..] the
-- stream entry's field/value pairs
-- Returns 1 if the slot fired now, 0 if it (or a later one) had fired already.
expect_type(KEYS[1], 'string')
local mode = ARGV[3]
if mode == 'X' then
  expect_type(KEYS[2], 'stream')
else
  expect_type(KEYS[2], 'list')
end
local last = tonumber(redis.call('GET', KEYS[1]))
local slot = tonumber(ARGV[1])
if last and last >= slot then
  return 0
end
if mode == 'X' then
  local maxlen = tonumber(ARGV[4])
  if maxlen > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, 5))
  else
    redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
  end
elseif mode == 'L' then
  redis.call('LPUSH', KEYS[2], ARGV[5])
else
  redis.call('RPUSH', KEYS[2], ARGV[5])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
