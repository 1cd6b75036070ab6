-- Records messages as queued, each only if it has no status record yet: a producer that
-- records after pushing never overwrites what a fast worker already wrote (running, ...).
-- KEYS[1] the `queued` state index (zset), then per message its status record (hash) and its
-- events (list)
-- ARGV[1] TTL (ms), ARGV[2] now (ms), ARGV[3] queue name, ARGV[4] most ids kept in the index,
-- ARGV[4 + i] the id of the i-th message
-- Returns how many records were created.
expect_type(KEYS[1], 'zset')
for i = 2, #KEYS do
  expect_type(KEYS[i], i % 2 == 0 and 'hash' or 'list')
end
local ttl, now = tonumber(ARGV[1]), ARGV[2]
local event = '{"at":' .. now .. ',"kind":"queued","attempt":0}'
local created = 0
for i = 1, (#KEYS - 1) / 2 do
  local key, events, id = KEYS[2 * i], KEYS[2 * i + 1], ARGV[4 + i]
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'id', id, 'queue', ARGV[3], 'state', 'queued',
      'attempts', 0, 'queued_at', now, 'updated_at', now)
    redis.call('PEXPIRE', key, ttl)
    redis.call('RPUSH', events, event)
    redis.call('PEXPIRE', events, ttl)
    redis.call('ZADD', KEYS[1], now, id)
    created = created + 1
  end
end
if created > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(now) - ttl))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return created
