-- Writes one change of a job's record: fields of its status hash, maybe a new state (moving
-- the id between the per-state indexes), maybe an event on its timeline, maybe the deletion
-- of its checkpoint; every key written gets the TTL again.
-- KEYS[1] status (hash), KEYS[2] events (list), KEYS[3] checkpoint (string),
-- KEYS[4..8] the state indexes (zsets) of queued, running, succeeded, failed, dead
-- ARGV[1] new state ('' = unchanged), ARGV[2] now (ms), ARGV[3] TTL (ms),
-- ARGV[4] most events kept, ARGV[5] most ids kept per state index, ARGV[6] event ('' = none),
-- ARGV[7] '1' to delete the checkpoint, ARGV[8] the job id,
-- ARGV[9] n fields to clear, ARGV[10 .. 9+n] those fields, then field/value pairs to set.
local STATES = {queued = 4, running = 5, succeeded = 6, failed = 7, dead = 8}
expect_type(KEYS[1], 'hash')
expect_type(KEYS[2], 'list')
for i = 4, 8 do
  expect_type(KEYS[i], 'zset')
end
local state, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local target = STATES[state]
if state ~= '' and not target then
  return redis.error_reply('unknown job state ' .. state)
end
local n = tonumber(ARGV[9])
if n > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 10, 9 + n))
end
local set = {'updated_at', ARGV[2]}
if target then
  set[#set + 1] = 'state'
  set[#set + 1] = state
end
for i = 10 + n, #ARGV - 1, 2 do
  set[#set + 1] = ARGV[i]
  set[#set + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('PEXPIRE', KEYS[1], ttl)
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[6])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if target then
  for i = 4, 8 do
    if i ~= target then
      redis.call('ZREM', KEYS[i], ARGV[8])
    end
  end
  local index = KEYS[target]
  redis.call('ZADD', index, now, ARGV[8])
  -- A recent window, bounded by time and by count.
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now - ttl))
  redis.call('ZREMRANGEBYRANK', index, 0, -(tonumber(ARGV[5]) + 1))
  redis.call('PEXPIRE', index, ttl)
end
if ARGV[7] == '1' then
  redis.call('DEL', KEYS[3])
end
return 1
