-- Moves a checkpoint forward to a position, never back: a late or repeated save of an older
-- position (a retry after a lost reply, a slower replica, a stale worker) changes nothing but
-- the TTL. The value is the position `<major>-<minor>` (a stream entry id, or a job's
-- `<sequence>-0`), followed by a space and a payload when there is one.
-- KEYS[1] checkpoint (string)
-- ARGV[1] position (<major>-<minor>), ARGV[2] TTL (ms, 0 = none), ARGV[3] payload (optional)
-- Returns 1 if the checkpoint moved, 0 if it was already at or past the position.
local function parts(value)
  return string.match(value, '^(%d+)-(%d+)')
end
-- Decimal strings without leading zeros: compared by length, then as text (exact for any u64).
local function less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  return a < b
end
if not string.match(ARGV[1], '^%d+-%d+$') then
  return redis.error_reply('invalid checkpoint position ' .. ARGV[1])
end
local major, minor = parts(ARGV[1])
local ttl = tonumber(ARGV[2])
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'string' then
  return redis.error_reply('WRONGTYPE Pythia key ' .. KEYS[1] .. ' holds a ' .. t ..
    ' where a string is expected')
end
local current = redis.call('GET', KEYS[1])
if current then
  local cmajor, cminor = parts(current)
  if cmajor and not (less(cmajor, major) or (cmajor == major and less(cminor, minor))) then
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[1], ttl)
    end
    return 0
  end
end
local value = ARGV[1]
if ARGV[3] then
  value = value .. ' ' .. ARGV[3]
end
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
else
  redis.call('SET', KEYS[1], value)
end
return 1
