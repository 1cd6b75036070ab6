-- Replays dead letters, atomically per item: a dead letter leaves the dead-letter queue only
-- after its message is back on the queue, and is put back only if it was still there (so a
-- replay repeated, or racing a purge or another replay, never doubles a message).
-- KEYS[1] dead letters (a list, or a stream for mode 'S'), KEYS[2] the queue (a list, a stream
-- or a pub/sub channel)
-- ARGV[1] mode: 'L' / 'R' push onto that end of the list KEYS[2]; 'S' XADD to the stream
--   KEYS[2]; 'P' PUBLISH to the channel KEYS[2]
-- then for each dead letter: ref (the list item itself, or the dead-letter stream entry id), n,
--   n values (the payload to push or publish; for 'S' the field-value pairs of the new entry)
-- Returns {replayed, missing (no longer in the dead-letter queue), unheard, too big}: in mode 'P'
-- a message no subscriber received stays in the dead-letter list, and the replay stops there
-- (unheard = 1), leaving the rest untouched; a dead letter with more fields than one command can
-- take from a script stays in the dead-letter stream (counted in too big).
local mode = ARGV[1]
if mode == 'S' then
  expect_type(KEYS[1], 'stream')
  expect_type(KEYS[2], 'stream')
else
  expect_type(KEYS[1], 'list')
  if mode ~= 'P' then
    expect_type(KEYS[2], 'list')
  end
end
local replayed, missing, too_big = 0, 0, 0
local i = 2
while i <= #ARGV do
  local ref, n = ARGV[i], tonumber(ARGV[i + 1])
  local from, to = i + 2, i + 1 + n
  if mode == 'S' then
    if #redis.call('XRANGE', KEYS[1], ref, ref) == 0 then
      missing = missing + 1
    elseif n > MAX_UNPACK then
      too_big = too_big + 1
    else
      redis.call('XADD', KEYS[2], '*', unpack(ARGV, from, to))
      redis.call('XDEL', KEYS[1], ref)
      replayed = replayed + 1
    end
  elseif not redis.call('LPOS', KEYS[1], ref, 'RANK', -1) then
    missing = missing + 1
  else
    if mode == 'P' then
      if redis.call('PUBLISH', KEYS[2], ARGV[from]) == 0 then
        return {replayed, missing, 1, too_big}
      end
    elseif mode == 'L' then
      redis.call('LPUSH', KEYS[2], ARGV[from])
    else
      redis.call('RPUSH', KEYS[2], ARGV[from])
    end
    redis.call('LREM', KEYS[1], -1, ref)
    replayed = replayed + 1
  end
  i = to + 1
end
return {replayed, missing, 0, too_big}
