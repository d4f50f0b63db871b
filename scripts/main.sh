#!/usr/bin/env bash
# The main job on the embedded default: install, start the platform, show its status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
headwater up
headwater status --json
