-- Moves a reader's checkpoint forward to a stream entry id, never back: a late or repeated
-- save of an older id (a retry after a lost reply, a slower replica) changes nothing but the
-- TTL.
-- KEYS[1] checkpoint (string)
-- ARGV[1] entry id (<ms>-<seq>), ARGV[2] TTL (ms, 0 = none)
-- Returns 1 if the checkpoint moved, 0 if it was already at or past the id.
local function parts(id)
  return string.match(id, '^(%d+)-(%d+)$')
end
-- Decimal strings without leading zeros: compared by length, then as text (exact for any u64).
local function less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  return a < b
end
local ms, seq = parts(ARGV[1])
if not ms then
  return redis.error_reply('invalid stream entry id ' .. ARGV[1])
end
local ttl = tonumber(ARGV[2])
local current = redis.call('GET', KEYS[1])
if current then
  local cms, cseq = parts(current)
  if cms and not (less(cms, ms) or (cms == ms and less(cseq, seq))) then
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[1], ttl)
    end
    return 0
  end
end
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
