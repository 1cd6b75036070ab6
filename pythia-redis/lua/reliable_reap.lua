-- Returns a dead consumer's work to the queue. Runs only while the consumer's heartbeat key is
-- absent. In-flight items come back re-encoded by the caller with their attempt raised (a
-- message that kills its worker must reach the dead-letter queue in the end); each is taken
-- from the hash once (HDEL), so two reapers never double it. Staged items, never handed to a
-- handler, come back as they were. The consumer is forgotten once nothing of it is left.
-- KEYS[1] heartbeat, KEYS[2] in-flight (hash), KEYS[3] staging (list), KEYS[4] queue (list),
-- KEYS[5] consumer registry (set)
-- ARGV[1] 'L' if consumers pop the left end, 'R' the right; ARGV[2] consumer name;
-- ARGV[3..] pairs of delivery id, payload to enqueue
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local push = 'RPUSH'
local to = 'RIGHT'
if ARGV[1] == 'L' then
  push = 'LPUSH'
  to = 'LEFT'
end
local n = 0
for i = 3, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call(push, KEYS[4], ARGV[i + 1])
    n = n + 1
  end
end
while redis.call('LMOVE', KEYS[3], KEYS[4], 'RIGHT', to) do
  n = n + 1
end
if redis.call('HLEN', KEYS[2]) == 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[2])
end
return n
