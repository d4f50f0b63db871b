"""``headwater demo`` end to end on the real broker and the embedded warehouse, at a small size,
through the processes ``headwater up`` starts (the retrain worker and its trial workers among
them): a candidate retrained after the drift is promoted step by step; with ``--bad-candidate``
an operator's bad model is rolled back. No record is lost either way. After the promotion run,
the dashboard that ``demo`` leaves serving (inside the warehouse host) shows data in every panel
in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.dashboard.panels import PANELS
from headwater.infra.dashboard.service import running_dashboard_url
from headwater.infra.warehouse_host import host_file, running_host_pid
from headwater.operate.platform import stop_pid
from tests.conftest import settings_env
from tests.operate.chromium import chromium, panel_attributes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BASE = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000"))
# The demo streams on at a constant 300 events/s past EVENTS while the platform answers the drift
# (retrain, then four canary steps), up to three times as many: it never slows down for them.
EVENTS = 12_000


@pytest.fixture(scope="module")
def demo_env(kafka: HeadwaterSettings) -> Iterator[dict[str, str]]:
    env = settings_env(kafka)
    env.update(
        HEADWATER_DASHBOARD_PORT=str(BASE + 189),
        HEADWATER_METRICS_PORT=str(BASE + 190),
        HEADWATER_HTTP_PORT=str(BASE + 188),
        # the checkout under test (a worktree's layout, when the tests run there) first
        PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH", ""), str(REPO)])),
    )
    yield env
    pid = running_host_pid(
        kafka
    )  # the demo started the warehouse host; the broker is the fixture's
    if pid is not None:
        stop_pid(pid)
        host_file(kafka).unlink(missing_ok=True)


def _demo(env: dict[str, str], events: int, *flags: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "headwater.cli.main",
            "demo",
            "--events",
            str(events),
            "--rate",
            "300",
            "--seed",
            "11",
            "--json",
            *flags,
        ],
        env=env,
        cwd=tempfile.gettempdir(),  # not the checkout: its headwater/ would shadow PYTHONPATH
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, summary, done.stderr


@pytest.fixture(scope="module")
def promoted(demo_env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """One demo run that promotes, shared by the tests that look at it."""
    return _demo(demo_env, EVENTS)


def test_demo_promotes_a_retrained_candidate(promoted: tuple[int, dict[str, Any], str]) -> None:
    code, summary, progress = promoted
    assert code == 0, progress[-3000:]
    assert summary["decision"] == "promoted"
    assert summary["canary_steps"] == [0.1, 0.25, 0.5, 1.0]
    events = summary["events"]
    assert summary["lost_records"] == 0 and EVENTS <= events <= 3 * EVENTS
    assert summary["labels"] == events and summary["predictions"] >= events
    assert summary["drift_detected_at_event"] > summary["drift_injected_at_event"]
    assert summary["retrain_run_id"] and summary["candidate_version"] == 2
    assert summary["alarms_before_drift"] == 0
    assert summary["deadletters"] >= summary["malformed_events"] == 2  # rejected, not lost
    quality = summary["quality"]
    assert quality["after_drift"]["roc_auc"] < quality["before_drift"]["roc_auc"]
    assert quality["after_decision"]["roc_auc"] > quality["after_drift"]["roc_auc"]
    assert 0 < summary["seconds_to_detect"] < summary["seconds_to_decision"]
    # the retrain ran in the retrain worker's processes, not in the demo's: they spent CPU
    assert summary["retrain_cpu_s"] > 0 and summary["seconds_detection_to_decision"] > 0
    assert summary["rate_achieved"] > 0 and summary["rate_target"] == 300
    for step in ("drift detected", "retrain requested", "canary", "decision: promoted"):
        assert step in progress
    rows = summary["warehouse_rows"]  # every step is a row in the warehouse too
    assert rows["labels"] == events and rows["features"] == events
    assert rows["predictions"] >= events
    assert min(rows["metrics"], rows["drift"], rows["retrain_requests"], rows["runs"]) > 0
    assert rows["model_versions"] >= 7 and rows["routing"] >= 5


def test_dashboard_after_the_demo_has_data_in_every_panel(
    kafka: HeadwaterSettings, promoted: tuple[int, dict[str, Any], str], tmp_path: Path
) -> None:
    assert promoted[1], promoted[2][-3000:]  # the demo ran (its own test judges its outcome)
    url = running_dashboard_url(kafka)
    assert url is not None, "the demo left no dashboard serving"

    run = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", url)

    assert [line for line in run.stderr.splitlines() if ":CONSOLE" in line] == []
    assert 'data-ready="true"' in run.stdout
    panels = panel_attributes(run.stdout)
    # the warehouse's panels, and the supervisor's table of the processes `up` runs
    keys = [*(p.key for p in PANELS), "processes"]
    assert set(panels) == set(keys)
    empty = [key for key in keys if int(panels[key]["data-points"]) == 0]
    assert empty == [], f"panels without data after the demo: {empty}"
    undrawn = [p.key for p in PANELS if p.kind != "table" and panels[p.key]["data-drawn"] != "true"]
    assert undrawn == []
    assert "canary" in run.stdout  # the loop's timeline: drift, retrain, canary, ...


def test_demo_rolls_back_a_bad_candidate(demo_env: dict[str, str]) -> None:
    code, summary, progress = _demo(demo_env, 6000, "--bad-candidate")
    assert code == 0, progress[-3000:]
    assert summary["decision"] == "rolled_back"
    assert summary["canary_steps"][:1] == [0.1] and 1.0 not in summary["canary_steps"]
    assert summary["lost_records"] == 0
    assert "significantly worse" in summary["decision_reason"]
    assert "--bad-candidate" in progress
