-- Claims the pending entries of a dead consumer for the caller, and forgets the dead consumer
-- (XGROUP DELCONSUMER) once nothing of it is left.
-- A Pythia consumer is dead when its heartbeat key is gone: checked here, atomically with the
-- claim, so a consumer that comes back in between keeps its entries. A consumer Pythia does not
-- know (another tool) is judged by the caller on its idle time, and only its entries idle at
-- least ARGV[5] ms are taken.
-- Entries deleted from the stream while pending (trimmed) cannot be delivered: they are
-- acknowledged and counted as lost.
-- KEYS[1] stream, KEYS[2] the dead consumer's heartbeat, KEYS[3] the group's consumer registry
-- ARGV[1] group, ARGV[2] claimer, ARGV[3] dead consumer, ARGV[4] '1' to check the heartbeat,
-- ARGV[5] minimum idle time (ms), ARGV[6] at most this many entries
-- Returns {status, lost, id, delivery count before the claim, fields, id, count, fields, ...}
-- where status is -1 (alive after all: nothing done), 0 (claimed, some left) or 1 (claimed,
-- consumer removed).
local stream, group, dead = KEYS[1], ARGV[1], ARGV[3]
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return {-1, 0}
end
expect_type(KEYS[1], 'stream')
expect_type(KEYS[3], 'set')
local out = {0, 0}
local pending = redis.call('XPENDING', stream, group, 'IDLE', tonumber(ARGV[5]), '-', '+',
  tonumber(ARGV[6]), dead)
if #pending > 0 then
  local ids, counts = {}, {}
  for k, p in ipairs(pending) do
    ids[k] = p[1]
    counts[p[1]] = p[4]
  end
  local claimed = redis.call('XCLAIM', stream, group, ARGV[2], 0, unpack(ids))
  local got = {}
  for _, e in ipairs(claimed) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      got[e[1]] = true
      out[#out + 1] = e[1]
      out[#out + 1] = counts[e[1]]
      out[#out + 1] = e[2]
    end
  end
  local gone = {}
  for _, id in ipairs(ids) do
    if not got[id] then
      gone[#gone + 1] = id
    end
  end
  if #gone > 0 then
    redis.call('XACK', stream, group, unpack(gone))
    out[2] = #gone
  end
end
if #redis.call('XPENDING', stream, group, '-', '+', 1, dead) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', stream, group, dead)
  redis.call('SREM', KEYS[3], dead)
  out[1] = 1
end
return out
