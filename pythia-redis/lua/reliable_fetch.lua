-- Takes up to ARGV[1] items for one consumer and records each in the consumer's in-flight hash
-- under a delivery id of its own (ARGV[2], ARGV[2]+1, ...), so that equal bodies are still
-- distinct deliveries and each is acked (HDEL) exactly once.
-- Items parked in the consumer's staging list by a blocking BLMOVE come first.
-- KEYS[1] queue (list), KEYS[2] in-flight (hash), KEYS[3] staging (list)
-- ARGV[1] max items, ARGV[2] first delivery id, ARGV[3] 'L' to pop the left end, 'R' the right
local max = tonumber(ARGV[1])
local first = tonumber(ARGV[2])
local items = redis.call('LRANGE', KEYS[3], 0, max - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[3], #items, -1)
end
local want = max - #items
if want > 0 then
  local popped
  if ARGV[3] == 'L' then
    popped = redis.call('LPOP', KEYS[1], want)
  else
    popped = redis.call('RPOP', KEYS[1], want)
  end
  if popped then
    for _, item in ipairs(popped) do
      items[#items + 1] = item
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
return items
