-- Removes the entries every consumer group of the stream is done with: those older than the
-- oldest entry any group still has pending or has not yet been delivered. Trimming is
-- approximate (whole radix-tree nodes), so a few processed entries may stay; an entry some group
-- still needs never goes.
-- KEYS[1] stream
-- ARGV[1] at most this many entries per call (0 = no limit)
-- Returns the number of entries removed.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local keep
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for k = 1, #g, 2 do
    if g[k] == 'name' then
      name = g[k + 1]
    elseif g[k] == 'last-delivered-id' then
      last = g[k + 1]
    end
  end
  local oldest = last
  local summary = redis.call('XPENDING', KEYS[1], name)
  if summary[1] > 0 then
    oldest = summary[2]
  end
  if keep == nil or older(oldest, keep) then
    keep = oldest
  end
end
if keep == nil or keep == '0-0' then
  return 0
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', keep, 'LIMIT', tonumber(ARGV[1]))
