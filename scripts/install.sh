#!/usr/bin/env bash
# Installs what Headwater needs on a fresh Debian machine: Java 17 and Maven (for the local
# Apache Kafka) when missing, then the Python package with its dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "installing Java 17 and Maven with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
  else
    echo "Java 17 and Maven are required: install them, or use docker-compose (README)" >&2
    exit 1
  fi
fi

# Headless Chromium drives the dashboard's end-to-end test (tests/operate/test_dashboard.py).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  echo "installing Chromium with apt-get" >&2
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

# pip keeps its download cache under the user's cache directory (~/.cache/pip).
python3 -m pip install --disable-pip-version-check -q -e '.[dev]'

# The native Avro codec (native/: Rust, through PyO3 and maturin) that the feature worker's hot
# path uses. Cargo keeps its downloads in ~/.cargo and its build under the user's cache
# directory, so building again in a fresh clone only relinks.
if ! command -v cargo >/dev/null; then
  echo "cargo (Rust) is required to build native/, the hot-path Avro codec: install Rust" \
    "with rustup, then run this again" >&2
  exit 1
fi
CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/headwater/native-target" \
  python3 -m pip install --disable-pip-version-check -q ./native

# Resolve the Kafka jars once (Maven caches them in ~/.m2); later starts download nothing.
mvn -q -B -f infra/kafka/pom.xml dependency:resolve >/dev/null
