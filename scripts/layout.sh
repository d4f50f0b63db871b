#!/usr/bin/env bash
# Lays the `headwater` namespace out as links under build/layout (build/layout/headwater/streams
# -> streams/, ...), the tree the wheel installs. mypy reads it (it has no package-dir mapping),
# and PYTHONPATH=build/layout runs a second checkout (a git worktree) as `headwater` instead of
# the editable install's. Run it again after adding a file directly under headwater/.
set -euo pipefail
cd "$(dirname "$0")/.."
layout=build/layout/headwater
rm -rf build/layout
mkdir -p "$layout"
for file in headwater/*; do ln -s "../../../$file" "$layout/$(basename "$file")"; done
for folder in core schemas infra streams trainers serving loop operate demo cli; do
  ln -s "../../../$folder" "$layout/$folder"
done
