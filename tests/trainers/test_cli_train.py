"""``headwater train --model demo --trials 8 --json`` end to end, then ``models`` and ``runs``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import ensure_topics
from tests.conftest import settings_env

pytestmark = pytest.mark.integration


def _headwater(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "headwater.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"headwater {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def _json(env: dict[str, str], *args: str) -> Any:
    return json.loads(_headwater(env, *args, "--json").stdout)


@pytest.mark.slow
def test_train_demo_with_a_search_then_manage_the_version(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = kafka.model_copy(update={"topic_prefix": f"cli-{unique}-"})
    ensure_topics(settings)
    home = tmp_path / "home"
    env = settings_env(settings)
    env.update(
        HEADWATER_HOME=str(home),
        HEADWATER_KAFKA_BOOTSTRAP=settings.bootstrap_servers,
        HEADWATER_TOPIC_PREFIX=settings.topic_prefix,
        OMP_NUM_THREADS="1",
    )
    seed = [sys.executable, "-m", "tests.trainers.warehouse_data", str(home), "demo"]
    subprocess.run([*seed, "card_activity"], env=env, check=True, timeout=120)

    trained = _json(env, "train", "--model", "demo", "--trials", "8", "--epochs", "2")
    assert trained["version"] == 1 and trained["study"]
    assert sum(trained["trials"][s] for s in ("completed", "pruned", "failed")) == 8
    assert trained["lineage"]["feature_set"] == "card_activity"
    assert trained["lineage"]["row_count"] == "400"

    [demo] = _json(env, "models", "list")
    assert demo["model"] == "demo"
    [version] = demo["versions"]
    assert version["stage"] == "registered"
    assert version["artifact_sha256"] == trained["artifacts"]["bundle"]
    assert version["signature"]["feature_set"] == "card_activity"

    runs = _json(env, "runs", "list", "--model", "demo")
    assert sum(r["kind"] == "trial" for r in runs) == 8
    [umbrella] = [r for r in runs if r["kind"] == "run"]
    assert umbrella["run_id"] == trained["run_id"] and umbrella["status"] == "completed"
    shown = _json(env, "runs", "show", trained["run_id"])
    assert shown["lineage"]["dataset_sha256"] == trained["artifacts"]["dataset"]

    promoted = _json(env, "models", "promote", "demo", "1", "--reason", "first", "--actor", "t")
    assert promoted["stage"] == "promoted" and promoted["aliases"] == {"champion": 1}
    refused = _headwater(env, "models", "archive", "demo", "1", "--reason", "x", check=False)
    assert refused.returncode == 1 and "is the champion" in refused.stderr
    unknown = _headwater(env, "models", "promote", "demo", "7", "--reason", "x", check=False)
    assert unknown.returncode == 1 and "demo@7 is not registered" in unknown.stderr
    rolled = _json(env, "models", "rollback", "demo", "--reason", "bad live")
    assert rolled["stage"] == "rolled_back" and rolled["aliases"] == {}
    shown_model = _json(env, "models", "show", "demo", "--at", str(version["registered_at_ms"]))
    assert shown_model["champion_at"]["version"] is None
