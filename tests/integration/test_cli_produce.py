"""`headwater produce` on the real broker: stdin by default, oversized records and lines that
are not JSON refused by line; `headwater consume` shows an application's JSON events as sent."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from tests.integration.test_cli import headwater, platform_env  # noqa: F401 (a fixture)
from tests.unit.test_schemas import SAMPLES

pytestmark = pytest.mark.integration


def test_produce_reads_stdin_and_refuses_an_oversized_record(
    platform_env: dict[str, str],  # noqa: F811
) -> None:
    assert headwater("up", "--bootstrap-only", env=platform_env).returncode == 0
    lines = [
        json.dumps(SAMPLES["Transaction"]),
        json.dumps(dict(SAMPLES["Transaction"], event_id="big", country="x" * 1_500_000)),
        json.dumps(dict(SAMPLES["Transaction"], event_id="e2")),
        "not json at all",
    ]
    produced = headwater(
        "produce", "events.raw", "--json", env=platform_env, stdin="\n".join(lines) + "\n"
    )
    assert produced.returncode == 1, produced.stderr
    assert "Traceback" not in produced.stderr
    assert "line 2: a record of" in produced.stderr and "message.max.bytes" in produced.stderr
    result = json.loads(produced.stdout)  # --json: stdout is one JSON document
    assert "line 4: not JSON:" in produced.stderr
    assert result["sent"] == 2 and [r["line"] for r in result["rejected"]] == [2, 4]
    consumed = headwater(
        "consume", "events.raw", "--from-beginning", "--max", "2", "--timeout", "20",
        env=platform_env,
    )  # fmt: skip
    events = [json.loads(line)["event_id"] for line in consumed.stdout.splitlines()]
    assert sorted(events) == ["e1", "e2"]

    # An application may send its events as JSON (the feature worker validates both): consume
    # shows them as sent, not as undecodable bytes.
    as_json = dict(SAMPLES["Transaction"], event_id="e3")
    plain = Producer(
        {"bootstrap.servers": f"127.0.0.1:{platform_env['HEADWATER_KAFKA_LOCAL_PORT']}"}
    )
    plain.produce(f"{platform_env['HEADWATER_TOPIC_PREFIX']}events.raw", json.dumps(as_json))
    assert plain.flush(20) == 0
    consumed = headwater(
        "consume", "events.raw", "--from-beginning", "--max", "3", "--timeout", "20",
        env=platform_env,
    )  # fmt: skip
    shown = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert as_json in shown, shown
