-- Returns a dead consumer's work to the queue. Runs only while the consumer's heartbeat key is
-- absent (ARGV[3] = '1' skips that check: a consumer taking back what an earlier process under
-- its own name left). In-flight items come back re-encoded by the caller with their attempt
-- raised (a message that kills its worker must reach the dead-letter queue in the end); each is
-- pushed, then taken from the hash, once, so two reapers never double it. Staged items, never
-- handed to a handler, come back as they were. The consumer is forgotten once nothing of it is
-- left.
-- KEYS[1] heartbeat, KEYS[2] in-flight (hash), KEYS[3] staging (list), KEYS[4] queue (list),
-- KEYS[5] consumer registry (set)
-- ARGV[1] 'L' if consumers pop the left end, 'R' the right; ARGV[2] consumer name;
-- ARGV[3] '1' to reap whatever the heartbeat says; ARGV[4..] pairs of delivery id, payload
-- Returns how many items came back, or -1 if the consumer is alive after all.
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
expect_type(KEYS[2], 'hash')
expect_type(KEYS[3], 'list')
expect_type(KEYS[4], 'list')
expect_type(KEYS[5], 'set')
local push = 'RPUSH'
local to = 'RIGHT'
if ARGV[1] == 'L' then
  push = 'LPUSH'
  to = 'LEFT'
end
local n = 0
for i = 4, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    redis.call(push, KEYS[4], ARGV[i + 1])
    redis.call('HDEL', KEYS[2], ARGV[i])
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
