-- Releases a lock, only if the token holds it (compare-and-delete): an owner whose lock
-- expired and was taken by another never deletes the other's lock.
-- KEYS[1] lock
-- ARGV[1] token
-- Returns 1 if released, 0 if the lock is not (or no longer) the token's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
