"""The `headwater` command line against the real broker and the real embedded warehouse."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.local_processes import pid_alive
from headwater.infra.warehouse_host import running_host_pid
from headwater.operate.platform import stop_pid
from headwater.operate.processes import STREAM_PROCESSES, stop_stream_processes
from headwater.schemas.topics import TOPICS
from tests.conftest import TEST_PORTS, settings_env

pytestmark = pytest.mark.integration


def headwater(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater.cli.main", *args],
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def platform_env(kafka: HeadwaterSettings, unique: str) -> Iterator[dict[str, str]]:
    """`headwater` on the session's broker with topics of its own; stops the warehouse host."""
    env = settings_env(kafka)
    env["HEADWATER_TOPIC_PREFIX"] = f"cli-{unique}-"
    yield env
    stop_stream_processes(kafka.model_copy(update={"topic_prefix": env["HEADWATER_TOPIC_PREFIX"]}))
    pid = running_host_pid(kafka)
    if pid is not None:
        stop_pid(pid)


def test_up_produce_consume_round_trip(platform_env: dict[str, str], tmp_path: Path) -> None:
    up = headwater("up", "--json", env=platform_env)
    assert up.returncode == 0, up.stderr
    report = json.loads(up.stdout)
    prefix = platform_env["HEADWATER_TOPIC_PREFIX"]
    assert {t["topic"] for t in report["topics"]} == {prefix + t for t in TOPICS}

    records = [
        {
            "event_id": f"e{i}",
            "card_id": f"card-{i % 2}",
            "event_time_ms": 1000 + i,
            "amount": 10.5 * i,
            "merchant_category": "grocery",
            "country": "FR",
        }
        for i in range(5)
    ]
    lines = [json.dumps(r) for r in records[:3]]
    lines += ['{"event_id": "bad", "card_id": "c"}', "not json at all"]
    lines += [json.dumps(r) for r in records[3:]]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")
    produced = headwater("produce", "events.raw", "--file", str(source), "--json", env=platform_env)
    assert produced.returncode == 1, produced.stderr  # some lines were rejected
    assert produced.stdout, produced.stderr
    result = json.loads(produced.stdout)
    assert result["sent"] == 5
    assert [r["line"] for r in result["rejected"]] == [4, 5]
    assert "line 4:" in produced.stderr and "line 5:" in produced.stderr

    consumed = headwater(
        "consume",
        "events.raw",
        "--from-beginning",
        "--max",
        "5",
        "--timeout",
        "20",
        env=platform_env,
    )
    assert consumed.returncode == 0, consumed.stderr
    got = [json.loads(line) for line in consumed.stdout.splitlines()]
    expected = [dict(r, channel="pos", distance_km=0.0, hour_of_day=0) for r in records]
    assert sorted(got, key=lambda r: r["event_id"]) == expected

    status = headwater("status", "--json", env=platform_env)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["kafka"]["reachable"] and state["warehouse"]["reachable"]
    raw = next(t for t in state["topics"] if t["topic"] == prefix + "events.raw")
    assert raw["records"] == 5 and raw["partitions"] == 3
    assert {t["table"] for t in state["tables"]} >= {"events_raw", "predictions", "routing"}
    assert all(t["rows"] >= 0 for t in state["tables"])

    query = headwater(
        "query", "SELECT count() AS n FROM headwater.schema_migrations", "--json", env=platform_env
    )
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)[0]["n"] >= 1


def test_query_with_a_format_clause_of_its_own_says_so(platform_env: dict[str, str]) -> None:
    """The query asks the engine for JSONCompact; the SQL's own FORMAT wins over it, and the
    output is not JSON: a clear error naming the clause, not a traceback."""
    query = headwater("query", "SELECT 1 AS n FORMAT Vertical", env=platform_env)
    assert query.returncode == 1
    assert "FORMAT clause" in query.stderr and "Traceback" not in query.stderr


def test_produce_refuses_records_of_the_wrong_schema(
    platform_env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "labels.jsonl"
    source.write_text(
        '{"entity_id": "c1", "label": "yes", "event_time_ms": 1, "labeled_at_ms": 2}\n'
    )
    produced = headwater("produce", "labels", "--file", str(source), env=platform_env)
    assert produced.returncode == 1
    assert "line 1: label:" in produced.stderr


def _lifecycle_env(tmp_path: Path, base: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(
        HEADWATER_HOME=str(tmp_path / "home"),
        HEADWATER_KAFKA_LOCAL_PORT=str(base + 1),
        HEADWATER_KAFKA_LOCAL_CONTROLLER_PORT=str(base + 2),
        HEADWATER_WAREHOUSE_HOST_PORT=str(base + 3),
        HEADWATER_HTTP_PORT=str(base + 4),  # the HTTP scoring server `up` starts
        HEADWATER_METRICS_PORT=str(base + 10),  # its processes' /metrics, upwards from here
    )
    return env


def test_up_then_down_leaves_no_process(tmp_path: Path) -> None:
    env = _lifecycle_env(tmp_path, TEST_PORTS["kafka"] + 300)
    started = time.monotonic()
    up = headwater("up", "--json", env=env)
    assert up.returncode == 0, up.stderr + up.stdout
    print(f"cold-ish `headwater up`: {time.monotonic() - started:.1f} s")
    pids = json.loads(up.stdout)["processes"]
    assert pids["kafka"] and pids["warehouse_host"]
    assert all(pids[name] for name in STREAM_PROCESSES), pids  # scorers, loop, retrain too
    down = headwater("down", "--json", env=env)
    assert down.returncode == 0, down.stderr
    stopped = json.loads(down.stdout)["stopped"]
    assert {"warehouse_host", "kafka", *STREAM_PROCESSES} <= set(stopped)
    assert all(stopped.values()), stopped
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    left = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert left.stdout.strip() == ""
    status = headwater("status", "--json", env={**env, "HEADWATER_KAFKA_TIMEOUT_S": "2"})
    assert status.returncode == 1
    assert json.loads(status.stdout)["kafka"]["reachable"] is False


def test_port_in_use_is_named(tmp_path: Path) -> None:
    env = _lifecycle_env(tmp_path, TEST_PORTS["kafka"] + 400)
    port = int(env["HEADWATER_KAFKA_LOCAL_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        up = headwater("up", env=env)
    assert up.returncode == 1
    assert f"port {port}" in up.stderr


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("HEADWATER_EVENT_SCHEMA_FILE", "/no/such/rides.avsc", "No such file"),
        ("HEADWATER_FEATURES", "no_such_package.features", "cannot be imported"),
        ("HEADWATER_FEATURES", "tests.streams.byo.ride_features", "but the configured domain"),
    ],
)
def test_a_wrong_schema_or_feature_module_fails_up_naming_it_before_anything_starts(
    tmp_path: Path, setting: str, value: str, said: str
) -> None:
    env = _lifecycle_env(tmp_path, TEST_PORTS["kafka"] + 700)
    env[setting] = value  # the demo's schema with the rides' features, in the last case
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # the user's modules
    up = headwater("up", env=env)
    assert up.returncode == 1
    assert setting in up.stderr and said in up.stderr, up.stderr
    assert "Traceback" not in up.stderr
    assert not (tmp_path / "home" / "kafka").exists()  # no broker was started for it


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    env = _lifecycle_env(tmp_path, TEST_PORTS["kafka"] + 500)
    env["PATH"] = str(Path(sys.executable).parent)  # a PATH with Python but no Java
    up = headwater("up", env=env)
    assert up.returncode == 1
    assert "java is not installed" in up.stderr and "docker-compose" in up.stderr


def test_unreachable_broker_is_named(tmp_path: Path) -> None:
    env = _lifecycle_env(tmp_path, TEST_PORTS["kafka"] + 600)
    env["HEADWATER_KAFKA_BOOTSTRAP"] = "127.0.0.1:9"
    status = headwater("status", env=env)
    assert status.returncode == 1
    assert "127.0.0.1:9 did not answer within 10 s" in status.stdout


def test_every_command_has_help() -> None:
    from headwater.cli.main import build_parser

    parser = build_parser()
    action = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands = list(action.choices or [])
    assert {"up", "down", "status", "produce", "consume", "query"} <= set(commands)
    for name in commands:
        shown = headwater(name, "--help", env=dict(os.environ))
        assert shown.returncode == 0 and "usage: headwater" in shown.stdout, name
    assert headwater("no-such-command", env=dict(os.environ)).returncode == 2
