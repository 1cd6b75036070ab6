-- Takes up to ARGV[1] items for one consumer and records each in the consumer's in-flight hash
-- under a delivery id of its own (ARGV[2], ARGV[2]+1, ...), so that equal bodies are still
-- distinct deliveries and each is acked (HDEL) exactly once. The items are recorded before they
-- leave the staging list and the queue.
-- Items parked in the consumer's staging list by a blocking BLMOVE come first.
-- The consumer is (re-)registered and its heartbeat refreshed in the same step: a consumer that
-- holds items is always one a reaper can find, even if it was taken for dead and forgotten.
-- KEYS[1] queue (list), KEYS[2] in-flight (hash), KEYS[3] staging (list), KEYS[4] consumer
-- registry (set), KEYS[5] heartbeat (string)
-- ARGV[1] max items, ARGV[2] first delivery id, ARGV[3] 'L' to pop the left end, 'R' the right,
-- ARGV[4] consumer name, ARGV[5] heartbeat lifetime (ms)
expect_type(KEYS[1], 'list')
expect_type(KEYS[2], 'hash')
expect_type(KEYS[3], 'list')
expect_type(KEYS[4], 'set')
local max = tonumber(ARGV[1])
local first = tonumber(ARGV[2])
local items = redis.call('LRANGE', KEYS[3], 0, max - 1)
local staged = #items
local want = max - staged
local taken = {}
if want > 0 then
  if ARGV[3] == 'L' then
    taken = redis.call('LRANGE', KEYS[1], 0, want - 1)
    for i = 1, #taken do
      items[staged + i] = taken[i]
    end
  else
    -- The right end pops the last item first: deliver in pop order.
    taken = redis.call('LRANGE', KEYS[1], -want, -1)
    local n = #taken
    for i = 1, n do
      items[staged + i] = taken[n + 1 - i]
    end
  end
end
if #items == 0 then
  return items
end
local args = {}
for i, item in ipairs(items) do
  args[#args + 1] = string.format('%d', first + i - 1)
  args[#args + 1] = item
end
redis.call('HSET', KEYS[2], unpack(args))
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('SET', KEYS[5], 1, 'PX', ARGV[5])
if staged > 0 then
  redis.call('LTRIM', KEYS[3], staged, -1)
end
if #taken > 0 then
  if ARGV[3] == 'L' then
    redis.call('LTRIM', KEYS[1], #taken, -1)
  else
    redis.call('LTRIM', KEYS[1], 0, -#taken - 1)
  end
end
return items
