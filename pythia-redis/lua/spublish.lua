-- Publishes each ARGV to the sharded pub/sub channel KEYS[1]; returns each receiver count.
--
-- A script rather than bare SPUBLISH so that it runs on the slot's master only: a replica
-- answers a script with MOVED, but accepts SPUBLISH for its master's slots and delivers it to
-- its own subscribers only. A client whose slot map is stale after a failover (the demoted
-- master still first for the slot) would publish into the void, counted 0, with no error.
local counts = {}
for i = 1, #ARGV do
  counts[i] = redis.call('SPUBLISH', KEYS[1], ARGV[i])
end
return counts
