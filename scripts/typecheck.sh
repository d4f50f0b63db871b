#!/usr/bin/env bash
# mypy --strict over the `headwater` namespace as the wheel lays it out (scripts/layout.sh), with
# the tests and benchmarks, as pyproject.toml's [tool.mypy] says.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/layout.sh
exec mypy "$@"
