#!/usr/bin/env bash
# Installs everything and runs the whole test suite: lint, strict typing, unit, doctest and
# integration tests against a real local Apache Kafka and the real chDB engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
ruff check .
ruff format --check .
bash scripts/typecheck.sh
(cd native && cargo fmt --check \
  && CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/headwater/native-target" \
    cargo clippy -q --release -- -D warnings)
python3 -m headwater.schemas.compat
# The built wheel in a fresh venv outside the checkout: command, public API, bootstrap, data.
bash scripts/check_wheel.sh
status=0
python3 -m pytest "$@" || status=$?
# Exit code 5 means an intentionally empty selection (e.g. `-m` matching nothing): not a failure.
if [ "$status" -eq 5 ]; then status=0; fi
exit "$status"
