-- Records messages as queued, each only if it has no status record yet: a producer that
-- records after pushing never overwrites what a fast worker already wrote (running, ...).
-- KEYS: one status record (hash) per message
-- ARGV[1] TTL (ms), ARGV[2] now (ms), ARGV[3] queue name, ARGV[3 + i] the id of KEYS[i]
-- Returns how many records were created.
local created = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'id', ARGV[3 + i], 'queue', ARGV[3], 'state', 'queued',
      'attempts', 0, 'queued_at', ARGV[2], 'updated_at', ARGV[2])
    redis.call('PEXPIRE', key, ARGV[1])
    created = created + 1
  end
end
return created
