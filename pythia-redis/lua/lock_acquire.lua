-- Takes a lock: sets it to the owner's token with a TTL unless another owner holds it. Taking
-- a lock one already holds refreshes its TTL, so a retry after a lost reply is harmless.
-- KEYS[1] lock
-- ARGV[1] token, ARGV[2] TTL (ms)
-- Returns 1 if the token now holds the lock, 0 if another owner does.
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
