-- Promotes retries whose time has come from the schedule (a sorted set scored by due time in
-- milliseconds) back onto the stream as new entries, atomically: a retry is never lost or
-- doubled even when several workers promote at once. Each member is the entry's fields, each
-- written as <length>:<bytes> (see stream_settle.lua).
-- A member 'delayed:<id>' is a delayed message (see delayed_schedule.lua): its fields, encoded
-- the same way, are taken from the hash of delayed messages, and removed from it, in the same
-- step.
-- KEYS[1] schedule (zset), KEYS[2] stream, KEYS[3] delayed messages (hash, optional)
-- ARGV[1] now (ms), ARGV[2] at most this many
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  if KEYS[3] and string.sub(member, 1, 8) == 'delayed:' then
    local id = string.sub(member, 9)
    member = redis.call('HGET', KEYS[3], id) or ''
    redis.call('HDEL', KEYS[3], id)
  end
  local fields, pos = {}, 1
  while pos <= #member do
    local colon = string.find(member, ':', pos, true)
    local len = colon and tonumber(string.sub(member, pos, colon - 1))
    if not len then
      break
    end
    fields[#fields + 1] = string.sub(member, colon + 1, colon + len)
    pos = colon + len + 1
  end
  if #fields >= 2 and #fields % 2 == 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
end
return #due
