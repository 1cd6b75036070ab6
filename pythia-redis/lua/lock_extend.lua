-- Extends a lock to a new TTL, only if the token still holds it.
-- KEYS[1] lock
-- ARGV[1] token, ARGV[2] TTL (ms)
-- Returns 1 if extended, 0 if the lock is not (or no longer) the token's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
