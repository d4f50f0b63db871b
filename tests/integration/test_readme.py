"""The README's examples run: "Use it from your application" against the real broker, and the
feature module of "Your own domain, end to end" declares a feature set."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import make_codec, read_topic
from headwater.infra.kafka_clients import ensure_topics
from tests.conftest import settings_env

README = Path(__file__).resolve().parents[2] / "README.md"


def python_block(section: str) -> str:
    """The first ```python block under the ``## section`` heading of the README."""
    text = README.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", body, re.S)
    assert found, f"no python block in README section {section!r}"
    code = found.group(1)
    indent = min(len(line) - len(line.lstrip()) for line in code.splitlines() if line.strip())
    return "\n".join(line[indent:] for line in code.splitlines())


def test_the_feature_module_example_declares_a_feature_set() -> None:
    namespace: dict[str, object] = {}
    exec(python_block("Your own domain, end to end"), namespace)
    assert namespace["FEATURE_SET"].names[:2] == ["rides_1h", "fare_sum_1h"]  # type: ignore[attr-defined]


@pytest.mark.integration
def test_use_it_from_your_application(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = kafka.model_copy(update={"topic_prefix": f"readme-{unique}-"})
    ensure_topics(settings)
    env = settings_env(settings)
    env["HEADWATER_HTTP_PORT"] = "9"  # nothing listens: the example's score reports it
    result = subprocess.run(
        [sys.executable, "-c", python_block("Use it from your application")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "did not answer" in result.stdout
    codec = make_codec(settings)
    labels = [codec.decode(r.value)[1] for r in read_topic(settings, "labels", group=unique)]
    assert [(label["entity_id"], label["event_id"]) for label in labels] == [("card-1", "e-1")]
