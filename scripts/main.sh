#!/usr/bin/env bash
# The main job on the embedded default: install, start the platform and run the demo's whole
# loop (drift → detection → retrain with search → canary → promotion), then show the platform's
# status. The platform stays up (dashboard at http://127.0.0.1:8089); `headwater down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
headwater up
headwater demo --json
headwater status --json
