-- Claims the pending entries of a dead consumer for the caller, and forgets the dead consumer
-- (XGROUP DELCONSUMER) once nothing of it is left.
-- A Pythia consumer is dead when its heartbeat key is gone: checked here, atomically with the
-- claim, so a consumer that comes back in between keeps its entries. A consumer Pythia does not
-- know (another tool) is judged by the caller on its idle time, and only its entries idle at
-- least ARGV[5] ms are taken.
-- The caller names the entries to claim (read from the dead consumer's pending list just
-- before): should this reply be lost, it knows which entries may now be its own, and delivers
-- those it finds in its pending list. Of them, only those still pending for the dead consumer
-- are taken.
-- Entries deleted from the stream while pending (trimmed) cannot be delivered: they are
-- acknowledged and counted as lost.
-- Checks before it writes: the types of the stream and the registry.
-- KEYS[1] stream, KEYS[2] the dead consumer's heartbeat, KEYS[3] the group's consumer registry
-- ARGV[1] group, ARGV[2] claimer, ARGV[3] dead consumer, ARGV[4] '1' to check the heartbeat,
-- ARGV[5] minimum idle time (ms), ARGV[6..] the ids to claim
-- Returns {status, lost, id, delivery count before the claim, fields, id, count, fields, ...}
-- where status is -1 (alive after all: nothing done), 0 (claimed, some left) or 1 (claimed,
-- consumer removed).
local stream, group, dead = KEYS[1], ARGV[1], ARGV[3]
expect_type(KEYS[1], 'stream')
expect_type(KEYS[3], 'set')
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return {-1, 0}
end
local out = {0, 0}
local ids, counts = {}, {}
for k = 6, #ARGV do
  local p = redis.call('XPENDING', stream, group, 'IDLE', tonumber(ARGV[5]), ARGV[k], ARGV[k], 1,
    dead)
  if #p == 1 then
    ids[#ids + 1] = p[1][1]
    counts[p[1][1]] = p[1][4]
  end
end
if #ids > 0 then
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
