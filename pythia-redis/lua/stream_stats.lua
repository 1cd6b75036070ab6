-- A snapshot of one consumer group of a stream, for gauges.
-- KEYS[1] stream, KEYS[2] retry schedule (zset), KEYS[3] dead letters (stream)
-- ARGV[1] group, ARGV[2] most entries to count when Redis does not know the group's lag
-- (Redis 6.2, or 7 after deletions)
-- Returns {entries not yet delivered to the group, pending, consumers, id of the next entry to
-- deliver or '', scheduled retries, dead letters}.
local scheduled = redis.call('ZCARD', KEYS[2])
local dead = redis.call('XLEN', KEYS[3])
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then
  return {0, 0, 0, '', scheduled, dead}
end
for _, g in ipairs(groups) do
  local info = {}
  for k = 1, #g, 2 do
    info[g[k]] = g[k + 1]
  end
  if info['name'] == ARGV[1] then
    local after = '(' .. info['last-delivered-id']
    local nxt = redis.call('XRANGE', KEYS[1], after, '+', 'COUNT', 1)
    local depth = info['lag']
    if type(depth) ~= 'number' then
      depth = #redis.call('XRANGE', KEYS[1], after, '+', 'COUNT', tonumber(ARGV[2]))
    end
    local next_id = ''
    if #nxt > 0 then
      next_id = nxt[1][1]
    end
    return {depth, info['pending'], info['consumers'], next_id, scheduled, dead}
  end
end
return {0, 0, 0, '', scheduled, dead}
