-- Hands deliveries back to the front of the queue unchanged (no attempt counted), in the order
-- given: the first id is the next one popped.
-- KEYS[1] in-flight (hash), KEYS[2] queue (list)
-- ARGV[1] 'L' if consumers pop the left end, 'R' the right; ARGV[2..] delivery ids
local n = 0
for i = #ARGV, 2, -1 do
  local item = redis.call('HGET', KEYS[1], ARGV[i])
  if item then
    redis.call('HDEL', KEYS[1], ARGV[i])
    if ARGV[1] == 'L' then
      redis.call('LPUSH', KEYS[2], item)
    else
      redis.call('RPUSH', KEYS[2], item)
    end
    n = n + 1
  end
end
return n
