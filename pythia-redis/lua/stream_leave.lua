-- Removes a consumer from its group on a clean shutdown, only when it has nothing pending
-- (XGROUP DELCONSUMER would drop pending entries). What is still pending is reclaimed by the
-- other consumers, since the caller deleted its heartbeat first.
-- KEYS[1] stream, KEYS[2] the group's consumer registry (set)
-- ARGV[1] group, ARGV[2] consumer
-- Returns 1 if the consumer left, 0 if it still has entries pending.
local ok, left = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if ok and #left > 0 then
  return 0
end
if ok then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
