-- Replays dead letters, atomically per item: a dead letter leaves the dead-letter queue only
-- when its message is put back on the queue, and is put back only if it was still there (so a
-- replay repeated, or racing a purge or another replay, never doubles a message).
-- KEYS[1] dead letters (a list, or a stream for mode 'S'), KEYS[2] the queue (a list, a stream
-- or a pub/sub channel)
-- ARGV[1] mode: 'L' / 'R' push onto that end of the list KEYS[2]; 'S' XADD to the stream
--   KEYS[2]; 'P' PUBLISH to the channel KEYS[2]
-- then for each dead letter: ref (the list item itself, or the dead-letter stream entry id), n,
--   n values (the payload to push or publish; for 'S' the field-value pairs of the new entry)
-- Returns {replayed, missing (no longer in the dead-letter queue), unheard}: in mode 'P' a
-- message no subscriber received goes back to the oldest end of the dead-letter list, and the
-- replay stops there (unheard = 1), leaving the rest untouched.
local mode = ARGV[1]
local replayed, missing = 0, 0
local i = 2
while i <= #ARGV do
  local ref, n = ARGV[i], tonumber(ARGV[i + 1])
  local from, to = i + 2, i + 1 + n
  if mode == 'S' then
    if redis.call('XDEL', KEYS[1], ref) == 1 then
      redis.call('XADD', KEYS[2], '*', unpack(ARGV, from, to))
      replayed = replayed + 1
    else
      missing = missing + 1
    end
  elseif redis.call('LREM', KEYS[1], -1, ref) == 1 then
    if mode == 'P' then
      if redis.call('PUBLISH', KEYS[2], ARGV[from]) == 0 then
        redis.call('RPUSH', KEYS[1], ref)
        return {replayed, missing, 1}
      end
    elseif mode == 'L' then
      redis.call('LPUSH', KEYS[2], ARGV[from])
    else
      redis.call('RPUSH', KEYS[2], ARGV[from])
    end
    replayed = replayed + 1
  else
    missing = missing + 1
  end
  i = to + 1
end
return {replayed, missing, 0}
