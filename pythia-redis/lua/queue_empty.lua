-- Empties a queue (`pythia empty`): removes every message waiting to be delivered, and with
-- ARGV[1] = '1' every delayed message and retry in its schedule too. In-flight messages (a
-- reliable list's in-flight hashes, a stream group's pending entries) are left to their workers.
-- KEYS[1] the queue (list or stream), KEYS[2] the schedule (zset), KEYS[3] delayed payloads (hash)
-- Returns {messages removed from the queue, messages removed from the schedule}
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'list' and t ~= 'stream' then
  error({err = 'WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. t .. ', not a list or a stream'})
end
expect_type(KEYS[2], 'zset')
expect_type(KEYS[3], 'hash')
local waiting = 0
if t == 'list' then
  waiting = redis.call('LLEN', KEYS[1])
  redis.call('DEL', KEYS[1])
elseif t == 'stream' then
  -- XTRIM keeps the stream and its consumer groups; entries a group holds pending stay in its
  -- pending list and are acknowledged as deleted when next read.
  waiting = redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
end
local scheduled = 0
if ARGV[1] == '1' then
  scheduled = redis.call('ZCARD', KEYS[2])
  redis.call('DEL', KEYS[2], KEYS[3])
end
return {waiting, scheduled}
