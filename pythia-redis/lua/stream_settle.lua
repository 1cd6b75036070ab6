-- Settles deliveries of one consumer group, idempotently: an entry still pending in the group is
-- scheduled for a retry, dead-lettered or handed back first, and only then acknowledged (XACK);
-- an entry no longer pending (settled already, or claimed and settled by another consumer) is
-- left alone. Settling the same batch twice changes nothing.
-- A retry, dead letter or hand-back keeps the entry's own fields (read back with XRANGE) with
-- Pythia's fields replaced by the ones given; when the entry is gone from the stream (trimmed
-- while pending) the fields the caller sent stand in for it.
-- A retry is kept in the schedule as its fields, each written as <length>:<bytes>, due after the
-- given delay on the server's clock.
-- An entry with more fields than one command can take from a script (MAX_UNPACK) is not touched:
-- its id is returned, and the caller moves it with a transaction (add, then acknowledge).
-- KEYS[1] stream, KEYS[2] retry schedule (zset), KEYS[3] dead letters (stream)
-- ARGV[1] group, ARGV[2] dead-letter cap (0 = none, the default), ARGV[3] '1' to XDEL settled entries,
-- ARGV[4] n, ARGV[5 .. 4+n] ids to acknowledge, then for each other entry:
--   op ('r' retry, 'd' dead-letter, 'l' hand back to the stream now), id, retry delay (ms),
--   m, m pairs of fields to set, f, f pairs of fields standing in for a vanished entry
-- Returns {settled, {ids left to the caller}, dead letters the cap trimmed (XADD MAXLEN ~ trims
-- whole nodes: counted from the dead-letter stream's length before and after)}.
local stream, group = KEYS[1], ARGV[1]
expect_type(stream, 'stream')
expect_type(KEYS[2], 'zset')
expect_type(KEYS[3], 'stream')
local cap = tonumber(ARGV[2])
local del = ARGV[3] == '1'
local now = now_ms()

local function encode(fields)
  local parts = {}
  for k = 1, #fields do
    parts[k] = #fields[k] .. ':' .. fields[k]
  end
  return table.concat(parts)
end

-- First, without writing: which entries are still pending, and the fields each one moves with.
local n = tonumber(ARGV[4])
local moves, too_big = {}, {}
local i = 5 + n
while i <= #ARGV do
  local op, id, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local set_from = i + 4
  local set_to = set_from + 2 * tonumber(ARGV[i + 3]) - 1
  local fb_from = set_to + 2
  local fb_to = fb_from + 2 * tonumber(ARGV[set_to + 1]) - 1
  if #redis.call('XPENDING', stream, group, id, id, 1) > 0 then
    local original
    local found = redis.call('XRANGE', stream, id, id)
    if #found > 0 and type(found[1][2]) == 'table' then
      original = found[1][2]
    else
      original = {}
      for k = fb_from, fb_to do
        original[#original + 1] = ARGV[k]
      end
    end
    local replaced = {}
    for k = set_from, set_to, 2 do
      replaced[ARGV[k]] = true
    end
    local fields = {}
    for k = 1, #original, 2 do
      if not replaced[original[k]] then
        fields[#fields + 1] = original[k]
        fields[#fields + 1] = original[k + 1]
      end
    end
    for k = set_from, set_to do
      fields[#fields + 1] = ARGV[k]
    end
    if op ~= 'r' and #fields > MAX_UNPACK then
      too_big[#too_big + 1] = id
    else
      moves[#moves + 1] = {op, id, delay, fields}
    end
  end
  i = fb_to + 1
end

-- Then the writes: each entry is added where it goes before it is acknowledged.
local settled = 0
local dead, dead_before = 0, 0
if cap > 0 then
  dead_before = redis.call('XLEN', KEYS[3])
end
for _, mv in ipairs(moves) do
  local op, id, delay, fields = mv[1], mv[2], mv[3], mv[4]
  if op == 'r' then
    redis.call('ZADD', KEYS[2], now + tonumber(delay), encode(fields))
  elseif op == 'd' then
    if cap > 0 then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', cap, '*', unpack(fields))
      dead = dead + 1
    else
      redis.call('XADD', KEYS[3], '*', unpack(fields))
    end
  else
    redis.call('XADD', stream, '*', unpack(fields))
  end
  settled = settled + redis.call('XACK', stream, group, id)
  if del then
    redis.call('XDEL', stream, id)
  end
end

i = 5
while i <= 4 + n do
  local j = math.min(i + 999, 4 + n)
  settled = settled + redis.call('XACK', stream, group, unpack(ARGV, i, j))
  if del then
    redis.call('XDEL', stream, unpack(ARGV, i, j))
  end
  i = j + 1
end
local trimmed = 0
if dead > 0 then
  trimmed = dead_before + dead - redis.call('XLEN', KEYS[3])
end
return {settled, too_big, trimmed}
