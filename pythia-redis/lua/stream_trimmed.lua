-- Counts the entries removed from the stream (a producer's MAXLEN, an XTRIM) before one consumer
-- group was delivered them, and clears that count, so that each loss is reported once, by one
-- consumer.
-- Redis 7 keeps per group a read counter ('entries-read': the entries up to its position), and
-- per stream the entries ever added. When the group's position is before the stream's first
-- entry, every entry no longer in the stream (entries-added - length) is either one the group
-- read or one removed unread: the difference with its counter is the loss. When the position is
-- at the stream's end, the group's lag (entries-added - entries-read) is the loss, on the Redis
-- versions whose counter goes on counting one per read past removed entries (7.0); later ones
-- count the removed entries as read when the group reads past them, so there the loss is seen
-- only before that read. Between the two nothing is said; the loss, when still known, is seen
-- later. Clearing it sets the counter to what the group has passed (XGROUP SETID to the same
-- position, ENTRIESREAD): the position does not move, and the group's lag becomes true.
-- A group whose counter Redis does not know yet (created, never read) gets one: counting every
-- entry removed so far as passed when ARGV[2] is '1' (the caller has just created the group) or
-- the group has read something; as removed unread when it never read anything (created at the
-- end of an empty stream by another tool before a producer trimmed).
-- Checks before it writes: only XGROUP SETID writes, last, and only when there is something to
-- set.
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] '1' when the caller has just created the group
-- Returns the entries removed unread since the last call, or -1 when Redis cannot tell (no such
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
-- A missing 'entries-read' field (not a nil one) is a Redis before 7.0.
if info == nil or info['entries-read'] == nil then
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
local function entries_added()
  local s = redis.call('XINFO', 'STREAM', stream)
  for k = 1, #s, 2 do
    if s[k] == 'entries-added' then
      return s[k + 1]
    end
  end
  return 0
end
local position = info['last-delivered-id']
local read = info['entries-read']
-- Without a counter, what was removed counts as passed unless the group never read anything.
local removed_was_passed = ARGV[2] == '1' or position ~= '0-0'
local length = redis.call('XLEN', stream)
local missed, passed
if length > 0
  and compare(position, redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1]) < 0 then
  -- Before the first entry: everything removed is behind the position.
  passed = entries_added() - length
  if read then
    missed = passed - read
  elseif removed_was_passed then
    missed = 0
  else
    missed = passed
  end
elseif length == 0
  or compare(position, redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1][1]) >= 0 then
  -- At the end: nothing is left after the position.
  if read then
    local lag = info['lag']
    if not lag then
      return -1
    end
    missed = lag
    passed = read + lag
  else
    missed = 0
    passed = entries_added()
  end
else
  return 0
end
if missed < 0 then
  missed = 0
end
if read and missed == 0 then
  return 0
end
redis.call('XGROUP', 'SETID', stream, group, position, 'ENTRIESREAD', passed)
return missed
