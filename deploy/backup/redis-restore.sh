#!/bin/sh
# Turns a backup made by redis-backup.sh into the data directory of a queue Redis.
#
#   redis-restore.sh BACKUP.rdb DATA_DIR
#
# Run it with the queue Redis stopped, on an empty DATA_DIR (its volume), then start the queue
# Redis as usual. Copying the .rdb into place is not enough: queue.conf has `appendonly yes`,
# and a Redis 7 with AOF on and no AOF yet ignores dump.rdb and starts EMPTY (it writes a new,
# empty AOF base). So this script loads the snapshot into a private redis-server (AOF off,
# a Unix socket only, no TCP), turns AOF on there (Redis rewrites the AOF from memory), waits
# for the rewrite and shuts it down: DATA_DIR then holds an AOF with every key of the backup,
# which the real server loads. Needs redis-server and redis-cli (the redis image has both).
# deploy/tests/check_deploy.py backs up a live server, restores with this script and compares.
set -eu

backup=${1:?usage: redis-restore.sh BACKUP.rdb DATA_DIR}
dir=${2:?usage: redis-restore.sh BACKUP.rdb DATA_DIR}

log() { printf 'redis-restore: %s\n' "$*" >&2; }

[ -f "$backup" ] || { log "no such backup: $backup"; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd) # redis-server resolves paths after changing into --dir
if [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    log "$dir is not empty: restore into an empty data directory (move the old one aside)"
    exit 2
fi
redis-check-rdb "$backup" >/dev/null || { log "$backup is damaged"; exit 1; }
cp "$backup" "$dir/dump.rdb"
# In DATA_DIR (a container's root file system may be read-only); a socket path is limited to
# 107 bytes.
sock="$dir/.restore.sock"
[ "${#sock}" -le 100 ] || { log "the path of $dir is too long for a Unix socket: use a shorter one"; exit 2; }
redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$dir" \
    --dbfilename dump.rdb --appendonly no --save '' --daemonize no --logfile "$dir/restore.log" &
pid=$!
cli() { env -u REDISCLI_AUTH redis-cli -s "$sock" "$@"; }
fail() { log "$1 (see $dir/restore.log)"; kill "$pid" 2>/dev/null || true; exit 1; }
i=0
until [ "$(cli PING 2>/dev/null)" = PONG ]; do
    i=$((i + 1)); [ "$i" -le 600 ] || fail "redis-server did not start"
    kill -0 "$pid" 2>/dev/null || fail "redis-server exited"
    sleep 0.1
done
# LOADING is answered to PING too: wait for the dataset.
until cli INFO persistence | grep -q '^loading:0'; do sleep 0.1; done
keys=$(cli DBSIZE)
cli CONFIG SET appendonly yes >/dev/null || fail "could not turn AOF on"
# The rewrite runs in a child; aof_enabled turns 1 once it is done.
i=0
until cli INFO persistence | grep -q '^aof_enabled:1' &&
    cli INFO persistence | grep -q '^aof_rewrite_in_progress:0'; do
    i=$((i + 1)); [ "$i" -le 36000 ] || fail "the AOF rewrite did not finish within an hour"
    sleep 0.1
done
cli SHUTDOWN >/dev/null 2>&1 || true
wait "$pid" || true
rm -f "$sock" "$dir/restore.log"
log "restored $keys keys from $backup into $dir (AOF and RDB): start the queue Redis on it"
