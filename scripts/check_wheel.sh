#!/usr/bin/env bash
# What a user gets from the wheel: builds it, installs it into a fresh venv outside the checkout,
# and checks the command, the public API, `headwater up --bootstrap-only` on a broker of its own
# (free ports, a temporary HEADWATER_HOME, `headwater down` after), the package data, and that no
# generic top-level module (schemas, infra, streams, serving, trainers) is importable.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d -t headwater-wheel-XXXXXX)"
venv="$work/venv"
export HEADWATER_HOME="$work/home"

cleanup() {
  if [ -x "$venv/bin/headwater" ]; then
    (cd "$work" && "$venv/bin/headwater" down >/dev/null 2>&1) || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building the wheel"
# --no-build-isolation: setuptools and wheel are already here; the check needs no network.
pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$work/dist" "$repo"
wheel="$(ls "$work"/dist/headwater-*.whl)"
echo "$wheel"

echo "== package data and top-level names in the wheel"
python3 - "$wheel" <<'PY'
import fnmatch
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
wanted = [
    "headwater/py.typed",
    "headwater/schemas/avro/*.avsc",
    "headwater/schemas/history/*/*.avsc",
    "headwater/infra/ddl/*.sql",
    "headwater/infra/kafka/pom.xml",
    "headwater/infra/dashboard/static/*",
]
missing = [pattern for pattern in wanted if not fnmatch.filter(names, pattern)]
tops = sorted({name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")})
if missing or tops != ["headwater"]:
    sys.exit(f"wheel is wrong: missing {missing}, top-level names {tops}")
print(f"{len(names)} files; package data present; only headwater/ at the top")
PY

echo "== installing into a fresh venv (torch and the other dependencies from the system)"
python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --quiet --no-deps "$wheel"

# Outside the checkout, with nothing of it on the path: the wheel's headwater or nothing.
cd "$work"
unset PYTHONPATH
export PYTHONSAFEPATH=1

"$venv/bin/python" - "$venv" <<'PY'
import importlib
import sys

import headwater

venv = sys.argv[1]
assert headwater.__file__.startswith(venv), f"headwater came from {headwater.__file__}, not {venv}"
headwater.Client  # the public API
for name in ("schemas", "infra", "streams", "serving", "trainers"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    sys.exit(f"a generic top-level module {name!r} is importable")
print(f"headwater {headwater.__version__} from {headwater.__file__}; no generic top-level module")
PY

echo "== headwater --help / --version"
"$venv/bin/headwater" --help >/dev/null
"$venv/bin/headwater" --version

echo "== headwater up --bootstrap-only on free ports"
ports=($("$venv/bin/python" - <<'PY'
import socket

sockets = [socket.socket() for _ in range(6)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
for s in sockets:
    s.close()
PY
))
export HEADWATER_KAFKA_LOCAL_PORT="${ports[0]}" HEADWATER_KAFKA_LOCAL_CONTROLLER_PORT="${ports[1]}"
export HEADWATER_WAREHOUSE_HOST_PORT="${ports[2]}" HEADWATER_METRICS_PORT="${ports[3]}"
export HEADWATER_HTTP_PORT="${ports[4]}" HEADWATER_DASHBOARD_PORT="${ports[5]}"
"$venv/bin/headwater" up --bootstrap-only --json >"$work/up.json"
"$venv/bin/python" - "$work/up.json" <<'PY'
import json
import sys

report = json.load(open(sys.argv[1]))
assert report["kafka"]["reachable"] and report["warehouse"]["reachable"], report
print(f"{len(report['topics'])} topics, {len(report['tables'])} tables")
PY
"$venv/bin/headwater" down --json
echo "wheel check passed"
