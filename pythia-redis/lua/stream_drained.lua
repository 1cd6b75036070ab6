-- Whether a consumer group has anything left: entries pending for any of its consumers, entries
-- not yet delivered to it (any entry after its last-delivered id; works on Redis 6.2, where
-- XINFO has no lag), and retries waiting in the schedule.
-- KEYS[1] stream, KEYS[2] retry schedule (zset)
-- ARGV[1] group
-- Returns {pending, 1 if entries wait undelivered else 0, scheduled}, or {-1, 0, 0} when the
-- group does not exist.
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then
  return {-1, 0, 0}
end
for _, g in ipairs(groups) do
  local name, pending, last
  for k = 1, #g, 2 do
    if g[k] == 'name' then
      name = g[k + 1]
    elseif g[k] == 'pending' then
      pending = g[k + 1]
    elseif g[k] == 'last-delivered-id' then
      last = g[k + 1]
    end
  end
  if name == ARGV[1] then
    local after = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
    return {pending, #after, redis.call('ZCARD', KEYS[2])}
  end
end
return {-1, 0, 0}
