#!/usr/bin/env bash
# Runs every fuzz target of Pythia's decoders for a bounded time each (default 30 s):
#
#   bash fuzz/run.sh          # 30 s per target
#   bash fuzz/run.sh 600      # 10 minutes per target
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address) to rustc. Only stable Rust is
# installed here, and stable rustc accepts them with RUSTC_BOOTSTRAP=1; the address sanitizer
# runtime ships with the stable toolchain. Crashes land in fuzz/artifacts/<target>/ and are
# replayed with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>`.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in envelope_decode dead_letter_decode stream_entry_decode; do
  echo "== $target: ${secs}s"
  cargo fuzz run "$target" -- -max_total_time="$secs"
done
