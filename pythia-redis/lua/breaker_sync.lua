-- Syncs one replica's circuit breaker with the state every replica shares, atomically, by the
-- server's clock: applies what the replica saw since its last sync, then answers the state.
-- KEYS[1] the breaker's hash: state (closed|open), until (ms, server clock), calls, failures,
--         consecutive
-- ARGV[1] successes seen, ARGV[2] failures seen, ARGV[3] the replica's consecutive failures,
-- ARGV[4] event ("", "opened", "closed"), ARGV[5] cool-down (ms),
-- ARGV[6] consecutive-failure threshold (0 = off), ARGV[7] failure rate (0 = off),
-- ARGV[8] window size, ARGV[9] minimum calls, ARGV[10] TTL of the hash (ms)
-- Returns {0} closed, {1} half-open, {2, remaining ms} open.
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE circuit breaker key ' .. KEYS[1] .. ' is a ' .. t)
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ok, failed = tonumber(ARGV[1]), tonumber(ARGV[2])
local consec_local, event = tonumber(ARGV[3]), ARGV[4]
local cool_down = tonumber(ARGV[5])
local max_consec, max_rate = tonumber(ARGV[6]), tonumber(ARGV[7])
local window, min_calls = tonumber(ARGV[8]), tonumber(ARGV[9])

local h = redis.call('HMGET', KEYS[1], 'state', 'until', 'calls', 'failures', 'consecutive')
local state = h[1] or 'closed'
local open_until = tonumber(h[2]) or 0

local function open()
  state, open_until = 'open', now + cool_down
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', open_until, 'calls', 0, 'failures', 0,
    'consecutive', 0)
end

if event == 'opened' then
  -- Opened by a replica: unless it is open already (its deadline stands).
  if not (state == 'open' and now < open_until) then open() end
elseif event == 'closed' then
  -- A replica's probes succeeded: close a half-open breaker (not one re-opened since).
  if state == 'open' and now >= open_until then
    state = 'closed'
    redis.call('HSET', KEYS[1], 'state', 'closed', 'until', 0, 'calls', 0, 'failures', 0,
      'consecutive', 0)
  end
end

if state == 'closed' and (ok > 0 or failed > 0) then
  -- The fleet's window: counts decay to the window size, so old calls weigh less.
  local calls = (tonumber(h[3]) or 0) + ok + failed
  local failures = (tonumber(h[4]) or 0) + failed
  if calls > window then
    failures = failures * window / calls
    calls = window
  end
  local consecutive
  if ok > 0 then consecutive = consec_local else consecutive = (tonumber(h[5]) or 0) + failed end
  if (max_consec > 0 and consecutive >= max_consec)
    or (max_rate > 0 and calls >= min_calls and failures / calls >= max_rate) then
    open()
  else
    redis.call('HSET', KEYS[1], 'state', 'closed', 'calls', calls, 'failures', failures,
      'consecutive', consecutive)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[10])

if state == 'closed' then return {0} end
if now >= open_until then return {1} end
return {2, open_until - now}
