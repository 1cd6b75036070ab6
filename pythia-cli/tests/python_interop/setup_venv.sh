#!/usr/bin/env bash
# Makes (once) the venv with the pinned Python pythia-framework that
# pythia-cli/tests/python_interop.rs runs against, at $1 (the same pins as the peers' bench:
# benches/peers/python). Kept between runs: a venv that imports pythia is reused as it is.
set -euo pipefail
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
pins="$here/../../../benches/peers/python"
# The pinned version, e.g. 1.0.1 from `pythia-framework[redis]==1.0.1`.
want="$(sed -n 's/^pythia-framework[^=]*==//p' "$pins/requirements.txt")"
check="import importlib.metadata as m, pythia; assert m.version('pythia-framework') == '$want'"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  -r "$pins/requirements.txt" -c "$pins/constraints.txt"
"$venv/bin/python" -c "$check" >/dev/null 2>&1
