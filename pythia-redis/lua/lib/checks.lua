-- Shared checks, prepended to every script that moves a message (see scripts.rs). Redis does not
-- roll a script back when a command fails halfway, so a script checks every key's type and every
-- size it depends on before its first write, and then adds before it removes: a message is
-- never nowhere.

-- Fails the script, before any write, when `key` holds another type than `want` (a key that
-- does not exist yet is fine). The reply starts with WRONGTYPE, which Pythia reports as a
-- configuration error.
local function expect_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE Pythia key ' .. key .. ' holds a ' .. t .. ' where a ' .. want ..
      ' is expected'})
  end
end

-- Most values one `unpack` can hand to one command: Lua's C stack holds about 8,000; a stream
-- entry with more fields than this is moved by the caller (a MULTI transaction) instead.
local MAX_UNPACK = 7000

-- The server's clock in milliseconds: every due time is on it, never on a worker's own clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
