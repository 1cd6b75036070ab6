-- Hands deliveries back to the front of the queue unchanged (no attempt counted), in the order
-- given: the first id is the next one popped. Each is pushed before it leaves the in-flight hash.
-- KEYS[1] in-flight (hash), KEYS[2] queue (list)
-- ARGV[1] 'L' if consumers pop the left end, 'R' the right; ARGV[2..] delivery ids
-- Returns how many were handed back.
expect_type(KEYS[1], 'hash')
expect_type(KEYS[2], 'list')
local n = 0
for i = #ARGV, 2, -1 do
  local item = redis.call('HGET', KEYS[1], ARGV[i])
  if item then
    if ARGV[1] == 'L' then
      redis.call('LPUSH', KEYS[2], item)
    else
      redis.call('RPUSH', KEYS[2], item)
    end
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
