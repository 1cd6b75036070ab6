-- Promotes retries whose time has come (on the server's clock) from the schedule (a sorted set
-- scored by due time in milliseconds) back onto the stream as new entries, atomically: a retry is
-- never lost or doubled even when several workers promote at once. Each member is the entry's
-- fields, each written as <length>:<bytes> (see stream_settle.lua); the entry is added before
-- the member leaves the schedule.
-- A member 'delayed:<id>' is a delayed message (see delayed_schedule.lua): its fields, encoded
-- the same way, are taken from the hash of delayed messages, and removed from it, in the same
-- step.
-- A member with more fields than one command can take from a script (MAX_UNPACK) stays in the
-- schedule and is returned: the caller moves it with a transaction. A member that does not
-- decode to fields (written by something else than Pythia) goes to the dead-letter stream whole,
-- as its body, never dropped.
-- KEYS[1] schedule (zset), KEYS[2] stream, KEYS[3] delayed messages (hash), KEYS[4] dead letters
-- (stream)
-- ARGV[1] at most this many
-- Returns {members due (moved or not), {members left to the caller}, undecodable}.
expect_type(KEYS[1], 'zset')
expect_type(KEYS[2], 'stream')
expect_type(KEYS[3], 'hash')
expect_type(KEYS[4], 'stream')
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local moves, too_big, bad = {}, {}, 0
for _, member in ipairs(due) do
  local encoded, delayed = member, nil
  if string.sub(member, 1, 8) == 'delayed:' then
    delayed = string.sub(member, 9)
    encoded = redis.call('HGET', KEYS[3], delayed)
  end
  if encoded == false or encoded == nil then
    -- A delayed message cancelled while due: nothing to move.
    moves[#moves + 1] = {member, delayed, nil}
  else
    local fields, pos = {}, 1
    while pos <= #encoded do
      local colon = string.find(encoded, ':', pos, true)
      local len = colon and tonumber(string.sub(encoded, pos, colon - 1))
      if not len or colon + len > #encoded then
        break
      end
      fields[#fields + 1] = string.sub(encoded, colon + 1, colon + len)
      pos = colon + len + 1
    end
    if #fields < 2 or #fields % 2 ~= 0 or pos <= #encoded then
      bad = bad + 1
      moves[#moves + 1] = {member, delayed, {'body', encoded, 'pythia-error',
        'not a Pythia stream retry: kept as it was in the schedule', 'pythia-failed-at', now},
        true}
    elseif #fields > MAX_UNPACK then
      too_big[#too_big + 1] = member
    else
      moves[#moves + 1] = {member, delayed, fields}
    end
  end
end
for _, mv in ipairs(moves) do
  if mv[4] then
    redis.call('XADD', KEYS[4], '*', unpack(mv[3]))
  elseif mv[3] then
    redis.call('XADD', KEYS[2], '*', unpack(mv[3]))
  end
  redis.call('ZREM', KEYS[1], mv[1])
  if mv[2] then
    redis.call('HDEL', KEYS[3], mv[2])
  end
end
return {#due, too_big, bad}
