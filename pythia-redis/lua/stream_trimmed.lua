-- Counts the entries removed from the stream (a producer's MAXLEN, an XTRIM) before one consumer
-- group was delivered them, and clears that count, so that each loss is reported once, by one
-- consumer.
-- Redis 7 keeps per group a counter of the entries it has read ('entries-read'), and its lag: the
-- entries added after its position. An entry trimmed unread stays in the lag (reads add 1 each),
-- so wherever the stream's remaining entries after the position are known cheaply, lag minus
-- them is what was trimmed unread: all of the stream when the position is before its first
-- entry, nothing when it is at (or past) its last. Elsewhere nothing is said now; the count stays
-- in the lag for a later call. Clearing it raises 'entries-read' by the count (XGROUP SETID to the
-- same position, ENTRIESREAD): the position does not move, and the lag becomes true again.
-- A group whose counter Redis does not know yet (created, never read) gets one: counting every
-- entry removed so far as passed when ARGV[2] is '1' (the caller has just created the group) or
-- the group has read something; as trimmed unread when it never read anything (created at the
-- end of an empty stream by another tool before the producer trimmed).
-- Checks before it writes: only XGROUP SETID writes, last.
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] '1' when the caller has just created the group
-- Returns the entries trimmed unread since the last call, or -1 when Redis cannot tell (no such
-- stream or group, Redis before 7.0, entries deleted with XDEL after the group's position).
local stream, group = KEYS[1], ARGV[1]
if redis.call('TYPE', stream)['ok'] ~= 'stream' then
  return -1
end
local info
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local fields = {}
  for k = 1, #g, 2 do
    fields[g[k]] = g[k + 1]
  end
  if fields['name'] == group then
    info = fields
  end
end
-- A missing 'lag' field (not a nil one) is a Redis before 7.0.
if info == nil or info['lag'] == nil then
  return -1
end
local function compare(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  if am ~= bm then
    return am < bm and -1 or 1
  end
  if as ~= bs then
    return as < bs and -1 or 1
  end
  return 0
end
local position = info['last-delivered-id']
local length = redis.call('XLEN', stream)
-- The entries of the stream after the group's position, when cheap to know.
local after
if length == 0 then
  after = 0
elseif compare(position, redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1]) < 0 then
  after = length
elseif compare(position, redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1][1]) >= 0 then
  after = 0
else
  return 0
end
local read = info['entries-read']
local missed
if not read then
  local added
  local s = redis.call('XINFO', 'STREAM', stream)
  for k = 1, #s, 2 do
    if s[k] == 'entries-added' then
      added = s[k + 1]
    end
  end
  if ARGV[2] == '1' or position ~= '0-0' then
    missed = 0
  else
    missed = added - length
  end
  read = added - after - missed
else
  local lag = info['lag']
  if not lag then
    return -1
  end
  missed = lag - after
  if missed <= 0 then
    return 0
  end
end
redis.call('XGROUP', 'SETID', stream, group, position, 'ENTRIESREAD', read + missed)
return missed
