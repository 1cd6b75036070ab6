#!/bin/sh
# Usage: benches/rate_limit.sh REDIS_PORT PATH_TO_PYTHIA   (a throwaway redis-server: it is FLUSHALLed)
# Three `pythia run --rate-limit` processes on one list queue; the aggregate rate from the queue's
# depth over 5 s after they all started, and the scripts Redis ran (gate polls + grants).
P=$1; B=$2; U=redis://127.0.0.1:$P
for LIMIT in 200 2000 10000; do for run in 1 2 3; do
redis-cli -p $P flushall >/dev/null
$B produce --redis-url $U -q jobs --count 100000 >/dev/null 2>&1
PIDS=""
for i in 1 2 3; do $B run --redis-url $U --broker list -q jobs --handler noop --rate-limit $LIMIT/s --metrics-addr off --log warn >/dev/null 2>&1 & PIDS="$PIDS $!"; done
while [ "$(redis-cli -p $P llen jobs)" = 100000 ]; do sleep 0.01; done
sleep 1; redis-cli -p $P config resetstat >/dev/null
t0=$(date +%s.%N); d0=$(redis-cli -p $P llen jobs); sleep 5; t1=$(date +%s.%N); d1=$(redis-cli -p $P llen jobs)
calls=$(redis-cli -p $P info commandstats | grep cmdstat_evalsha | sed 's/cmdstat_evalsha:calls=\([0-9]*\),.*/\1/' | tr -d '\r')
python3 -c "print(f'limit $LIMIT/s: {($d0-$d1)/($t1-$t0):.1f}/s, {$calls/($t1-$t0):.0f} scripts/s, {($d0-$d1)/$calls:.1f} msgs/script')"
kill $PIDS; wait 2>/dev/null
done; done
