-- Moves retries whose time has come (on the server's clock) from the schedule (a sorted set
-- scored by due time in milliseconds) to the back of the queue, atomically: a retry is never
-- lost or doubled even when several workers promote at once. The items are pushed before they
-- leave the schedule.
-- A member 'delayed:<id>' is a delayed message (see delayed_schedule.lua): its payload is taken
-- from the hash of delayed messages, and removed from it, in the same step.
-- KEYS[1] schedule (zset), KEYS[2] queue (list), KEYS[3] delayed messages (hash, optional)
-- ARGV[1] at most this many, ARGV[2] 'L' to LPUSH, 'R' to RPUSH
-- Returns how many schedule members were due.
expect_type(KEYS[1], 'zset')
expect_type(KEYS[2], 'list')
if KEYS[3] then
  expect_type(KEYS[3], 'hash')
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then
  return 0
end
local items, delayed = due, {}
if KEYS[3] then
  items = {}
  for _, member in ipairs(due) do
    if string.sub(member, 1, 8) == 'delayed:' then
      local id = string.sub(member, 9)
      local payload = redis.call('HGET', KEYS[3], id)
      if payload then
        items[#items + 1] = payload
        delayed[#delayed + 1] = id
      end
    else
      items[#items + 1] = member
    end
  end
end
if #items > 0 then
  if ARGV[2] == 'L' then
    redis.call('LPUSH', KEYS[2], unpack(items))
  else
    redis.call('RPUSH', KEYS[2], unpack(items))
  end
end
redis.call('ZREM', KEYS[1], unpack(due))
if #delayed > 0 then
  redis.call('HDEL', KEYS[3], unpack(delayed))
end
return #due
