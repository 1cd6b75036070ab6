#!/usr/bin/env bash
# Pythia and its peers side by side, on this machine, on one workload: N preloaded jobs with a
# 100-byte body (N=100000 unless given), a no-op handler, one worker process, each run on a
# fresh redis-server (no persistence) on a free loopback port, one after another. Prints one
# Markdown table: peer, version, settings, msg/s, peak RSS of the worker process.
#
#   benches/peers/run.sh            # installs what is missing, then runs every row
#   N=20000 RUNS=1 benches/peers/run.sh   # a shorter run (RUNS: runs per row, median shown)
#
# msg/s = N / seconds from the first job the worker started to the N-th it finished (each
# worker measures this itself and prints {"processed":N,"seconds":S}; Pythia's is the "busy"
# time of `pythia run --burst`'s summary): process start-up, imports, connecting and the
# preload are not counted. Peak RSS is /usr/bin/time's maximum resident set of the worker
# process (the interpreter's, for Node and Python).
#
# Installs, pinned, into benches/peers/.work/ (git-ignored; delete it to reinstall): BullMQ
# (npm ci of bullmq/package-lock.json), apalis + apalis-redis (cargo build --locked of
# apalis/, a cargo project outside Pythia's workspace), the Python pythia-framework (a venv:
# python/requirements.txt, each dependency pinned by python/constraints.txt). Pythia itself is
# target/release/pythia (built if missing; set PYTHIA_BIN to use another). Needs redis-server,
# node/npm, python3 (venv), cargo and /usr/bin/time (Debian package `time`).
#
# Not run by .ci/run: it takes several minutes (the slowest peers at their defaults run for
# a minute or more each), and its figures depend on the machine and its load.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK="$HERE/.work"
N=${N:-100000}
RUNS=${RUNS:-3}
PEER_TIMEOUT=${PEER_TIMEOUT:-900}
APALIS_MAX=7500
mkdir -p "$WORK"

for tool in redis-server redis-cli node npm python3 cargo /usr/bin/time; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool not found" >&2; exit 1; }
done

log() { echo "run.sh: $*" >&2; }

# --- installs -----------------------------------------------------------------------------

install_bullmq() {
  local dir="$WORK/bullmq"
  mkdir -p "$dir"
  cp "$HERE"/bullmq/{package.json,package-lock.json,preload.js,worker.js} "$dir/"
  if [ ! -d "$dir/node_modules/bullmq" ]; then
    log "installing BullMQ (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

install_python() {
  if [ ! -x "$WORK/venv/bin/python" ] || ! "$WORK/venv/bin/python" -c 'import pythia' 2>/dev/null; then
    log "installing the Python pythia-framework (venv)"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet -r "$HERE/python/requirements.txt" \
      -c "$HERE/python/constraints.txt" >&2
  fi
}

install_apalis() {
  log "building the apalis peer (cargo build --release --locked)"
  CARGO_INCREMENTAL=0 cargo build --quiet --release --locked \
    --manifest-path "$HERE/apalis/Cargo.toml" --target-dir "$WORK/apalis-target" >&2
}

install_pythia() {
  PYTHIA_BIN=${PYTHIA_BIN:-$ROOT/target/release/pythia}
  if [ ! -x "$PYTHIA_BIN" ]; then
    log "building pythia (cargo build --release -p pythia-cli)"
    (cd "$ROOT" && cargo build --quiet --release -p pythia-cli >&2)
  fi
}

# --- one redis-server per row ---------------------------------------------------------------

REDIS_PID=""
REDIS_DIR=""
PORT=""

start_redis() {
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pythia-peers-redis.XXXXXX")
  redis-server --port "$PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" --save "" --appendonly no \
    --daemonize no --loglevel warning >/dev/null 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "run.sh: redis-server did not start on port $PORT" >&2
  exit 1
}

stop_redis() {
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    rm -rf "$REDIS_DIR"
    REDIS_PID=""
  fi
}
trap stop_redis EXIT

# --- rows -----------------------------------------------------------------------------------

ROWS=()

# once N PRELOAD_CMD WORKER_CMD: one run on a fresh redis-server; prints "RATE RSS_KB", or
# "failed: REASON". Both commands are strings run by bash -c with $PORT and $N set; the
# worker's last stdout line is {"processed":N,"seconds":S} (Pythia's: its summary on stderr).
once() {
  local n=$1 preload=$2 worker=$3
  start_redis
  PORT=$PORT N=$n bash -c "$preload" >/dev/null 2>"$WORK/preload.err" \
    || { stop_redis; echo "failed: preload: $(tail -n 1 "$WORK/preload.err")"; return 0; }
  local out="$WORK/worker.out" err="$WORK/worker.err" rss="$WORK/worker.rss"
  local status=0
  PORT=$PORT N=$n /usr/bin/time -f '%M' -o "$rss" \
    timeout "$PEER_TIMEOUT" bash -c "exec $worker" >"$out" 2>"$err" || status=$?
  stop_redis
  local processed seconds
  if grep -q 's busy' "$err"; then
    # pythia run --burst: "processed N (…) in Xs (Ys busy, Z msg/s)"; Z is N over the busy
    # time unrounded (Y has only milliseconds).
    processed=$(sed -n 's/^processed \([0-9]*\) .*/\1/p' "$err" | tail -n 1)
    seconds=$(sed -n 's/.*s busy, \([0-9.]*\) msg\/s).*/\1/p' "$err" | tail -n 1)
    [ -n "$seconds" ] && seconds=$(python3 -c "print($n / $seconds)")
  else
    processed=$(tail -n 1 "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["processed"])' 2>/dev/null || true)
    seconds=$(tail -n 1 "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["seconds"])' 2>/dev/null || true)
  fi
  if [ "$status" != 0 ] || [ "${processed:-0}" != "$n" ] || [ -z "${seconds:-}" ]; then
    echo "failed: exit $status, processed ${processed:-?} of $n: $(grep -v '^\s*$' "$err" | tail -n 1 | cut -c1-200)"
    return 0
  fi
  echo "$(python3 -c "print($n / $seconds)") $(tail -n 1 "$rss")"
}

# row PEER VERSION SETTINGS PRELOAD_CMD WORKER_CMD [JOBS]: RUNS runs of N jobs (or JOBS);
# the table gets the median rate and the peak RSS of the run that gave it.
row() {
  local peer=$1 version=$2 settings=$3 preload=$4 worker=$5 n=${6:-$N}
  local results=() r
  for i in $(seq "$RUNS"); do
    log "$peer, $settings: run $i of $RUNS, $n jobs"
    r=$(once "$n" "$preload" "$worker")
    log "  $r"
    if [[ $r == failed* ]]; then
      ROWS+=("| $peer | $version | $settings | ${r} | |")
      return 0
    fi
    results+=("$r")
  done
  local median
  median=$(printf '%s\n' "${results[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")
  local rate mb runs
  rate=$(python3 -c "print(f'{${median% *}:,.0f}')")
  mb=$(python3 -c "print(f'{${median#* } / 1024:.1f}')")
  runs=$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | python3 -c 'import sys; print(" / ".join(f"{float(l):,.0f}" for l in sys.stdin))')
  local jobs=""
  [ "$n" != "$N" ] && jobs=" ($n jobs)"
  ROWS+=("| $peer | $version | $settings$jobs | **$rate** ($runs) | $mb MB |")
}

install_bullmq
install_python
install_apalis
install_pythia

BULLMQ_V="bullmq $(node -p 'require(process.argv[1] + "/node_modules/bullmq/package.json").version' "$WORK/bullmq"), ioredis $(node -p 'require(process.argv[1] + "/node_modules/ioredis/package.json").version' "$WORK/bullmq"), Node $(node --version)"
PY_V="pythia-framework $("$WORK/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("pythia-framework"))'), redis-py $("$WORK/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("redis"))'), $("$WORK/venv/bin/python" --version)"
APALIS_V="apalis $(sed -n '/^name = "apalis"$/{n;s/version = "\(.*\)"/\1/p}' "$HERE/apalis/Cargo.lock"), apalis-redis $(sed -n '/^name = "apalis-redis"$/{n;s/version = "\(.*\)"/\1/p}' "$HERE/apalis/Cargo.lock")"
PYTHIA_V="$("$PYTHIA_BIN" --version | sed 's/^pythia //') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
BULLMQ_DIR="$WORK/bullmq"
PY="$WORK/venv/bin/python"
APALIS="$WORK/apalis-target/release/apalis-peer"
PRODUCE="'$PYTHIA_BIN' --log warn produce --redis-url redis://127.0.0.1:\$PORT --queue peer --count \$N --size 100"
RUN="'$PYTHIA_BIN' --log warn run --redis-url redis://127.0.0.1:\$PORT --queue peer --handler noop --burst --metrics-addr off"

row "BullMQ" "$BULLMQ_V" "default (concurrency 1)" \
  "cd '$BULLMQ_DIR' && node preload.js \$PORT \$N" "node '$BULLMQ_DIR/worker.js' \$PORT \$N default"
row "BullMQ" "$BULLMQ_V" "concurrency 100, removeOnComplete" \
  "cd '$BULLMQ_DIR' && node preload.js \$PORT \$N" "node '$BULLMQ_DIR/worker.js' \$PORT \$N tuned"
row "apalis (Redis storage)" "$APALIS_V" "default (batch 10)" \
  "'$APALIS' preload redis://127.0.0.1:\$PORT \$N" "'$APALIS' work redis://127.0.0.1:\$PORT \$N default"
row "apalis (Redis storage)" "$APALIS_V" "batch 100, concurrency 100" \
  "'$APALIS' preload redis://127.0.0.1:\$PORT \$N" "'$APALIS' work redis://127.0.0.1:\$PORT \$N tuned"
# apalis-redis 1.0.0 queues every push as scheduled, and its fetch script moves all the due
# ones to the queue with one Lua unpack(), which fails beyond ~8,000 elements ("too many
# results to unpack"): a worker started on 100,000 waiting jobs stops at its first fetch. So
# apalis runs again on the largest preload it takes.
if [ "$N" -gt "$APALIS_MAX" ]; then
  row "apalis (Redis storage)" "$APALIS_V" "default (batch 10)" \
    "'$APALIS' preload redis://127.0.0.1:\$PORT \$N" "'$APALIS' work redis://127.0.0.1:\$PORT \$N default" "$APALIS_MAX"
  row "apalis (Redis storage)" "$APALIS_V" "batch 100, concurrency 100" \
    "'$APALIS' preload redis://127.0.0.1:\$PORT \$N" "'$APALIS' work redis://127.0.0.1:\$PORT \$N tuned" "$APALIS_MAX"
fi
row "pythia-framework (Python)" "$PY_V" "default (list, BLPOP)" \
  "'$PY' '$HERE/python/preload.py' \$PORT \$N list" "'$PY' '$HERE/python/worker.py' \$PORT \$N default"
row "pythia-framework (Python)" "$PY_V" "stream, batch 100 (never XACKs)" \
  "'$PY' '$HERE/python/preload.py' \$PORT \$N stream" "'$PY' '$HERE/python/worker.py' \$PORT \$N tuned"
row "Pythia" "$PYTHIA_V" "list, default (concurrency 64, batch 256)" \
  "$PRODUCE --broker list" "$RUN --broker list"
row "Pythia" "$PYTHIA_V" "reliable list, default" \
  "$PRODUCE --broker reliable-list" "$RUN --broker reliable-list"
row "Pythia" "$PYTHIA_V" "stream, default" \
  "$PRODUCE --broker stream" "$RUN --broker stream"
row "Pythia" "$PYTHIA_V" "reliable list, concurrency 256, batch 1000" \
  "$PRODUCE --broker reliable-list" "$RUN --broker reliable-list --concurrency 256 --batch-size 1000"
row "Pythia" "$PYTHIA_V" "stream, concurrency 256, batch 1000" \
  "$PRODUCE --broker stream" "$RUN --broker stream --concurrency 256 --batch-size 1000"

echo
echo "$N jobs of 100 B (unless said), one worker process, no-op handler, median of $RUNS runs (each run's rate in brackets); $(redis-server --version | cut -d' ' -f1-3); $(nproc) CPUs; $(date -u +%Y-%m-%d)"
echo
echo "| peer | version | settings | msg/s | peak RSS |"
echo "|---|---|---|---:|---:|"
printf '%s\n' "${ROWS[@]}"
