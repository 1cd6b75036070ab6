#!/bin/sh
# Backs up the queue Redis: a point-in-time RDB snapshot taken over the network (`redis-cli
# --rdb`, the replication SYNC: no access to the server's disk needed), checked with
# redis-check-rdb, kept as DIR/queue-<UTC time>.rdb, the oldest beyond BACKUP_KEEP deleted.
#
#   redis-backup.sh DIR              one backup, then exit (a Kubernetes CronJob)
#   BACKUP_EVERY=3600 redis-backup.sh DIR   one backup every BACKUP_EVERY seconds (compose)
#
# Environment:
#   REDIS_ADDRESS    host:port of the queue Redis (default 127.0.0.1:6379)
#   REDISCLI_AUTH    its password (read by redis-cli itself: never on a command line)
#   REDIS_CLI_ARGS   extra redis-cli arguments, e.g. "--tls --cacert /tls/ca.crt" for rediss://
#   BACKUP_KEEP      backups to keep (default 7)
#   BACKUP_EVERY     seconds between backups; unset or 0: one backup and exit
#
# A failed backup exits 1 (one-shot) or logs and retries at the next interval (loop), and never
# replaces or prunes a good backup. Restore with redis-restore.sh (deploy/backup/README.md).
# deploy/tests/check_deploy.py runs this script against a real redis-server and restores from it.
set -eu

dir=${1:?usage: redis-backup.sh DIR}
address=${REDIS_ADDRESS:-127.0.0.1:6379}
host=${address%:*}
port=${address##*:}
keep=${BACKUP_KEEP:-7}
every=${BACKUP_EVERY:-0}

log() { printf '%s redis-backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

case $keep in '' | *[!0-9]* | 0) log "BACKUP_KEEP must be a positive integer, not '$keep'"; exit 2 ;; esac
case $every in '' | *[!0-9]*) log "BACKUP_EVERY must be whole seconds, not '$every'"; exit 2 ;; esac
mkdir -p "$dir"

backup_once() {
    name="queue-$(date -u +%Y%m%dT%H%M%SZ).rdb"
    tmp="$dir/.partial-$name"
    # shellcheck disable=SC2086 # REDIS_CLI_ARGS is split on purpose
    if ! err=$(redis-cli -h "$host" -p "$port" ${REDIS_CLI_ARGS:-} --rdb "$tmp" 2>&1 >/dev/null); then
        log "snapshot of $address failed: $(printf '%s' "$err" | tail -n 3)"
        rm -f "$tmp"
        return 1
    fi
    if ! err=$(redis-check-rdb "$tmp" 2>&1); then
        log "snapshot of $address is damaged, not kept: $(printf '%s' "$err" | tail -n 3)"
        rm -f "$tmp"
        return 1
    fi
    mv "$tmp" "$dir/$name"
    log "backed up $address to $dir/$name ($(wc -c <"$dir/$name") bytes)"
    # Newest first (the names sort by time); delete everything after the first $keep.
    ls -1 "$dir" | grep -E '^queue-[0-9]{8}T[0-9]{6}Z\.rdb$' | sort -r | tail -n +"$((keep + 1))" |
        while read -r old; do
            rm -f "$dir/$old" && log "deleted old backup $old"
        done
}

if [ "$every" -eq 0 ]; then
    backup_once
    exit $?
fi
trap 'log "stopping"; exit 0' TERM INT
while :; do
    backup_once || log "will try again in ${every}s"
    sleep "$every" &
    wait $!
done
