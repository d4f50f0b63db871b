"""``docker-compose.yml`` checked without a Docker engine: the Compose Specification's own JSON
schema (vendored in ``deploy/compose-spec``), every command the services run, every
``HEADWATER_*`` variable, and the Grafana files it mounts."""

from __future__ import annotations

import importlib.util
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from headwater.cli.main import build_parser
from headwater.core.settings import ENV_PREFIX, HeadwaterSettings
from headwater.infra.dashboard.grafana import DATABASE, grafana_sql, render
from headwater.infra.dashboard.panels import PANELS
from headwater.infra.warehouse import ChdbWarehouse
from tests.operate.story import loop_story, write_story

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PLATFORM = sorted(name for name, s in SERVICES.items() if s.get("image") == "headwater:latest")


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((ROOT / "deploy" / "compose-spec" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(COMPOSE), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_the_platform_runs_its_processes_from_the_dockerfile() -> None:
    processes = {"init", "streams", "sink", "scorer", "http-scorer", "trial-worker", "dashboard"}
    assert processes <= set(PLATFORM)
    assert any("build" in SERVICES[name] for name in PLATFORM)
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.M))
    for stage, source in re.findall(r"^COPY (?:--from=(\S+) )?(\S+)", dockerfile, re.M):
        if stage:  # from an earlier build stage, not from the checkout
            assert stage in stages, f"Dockerfile copies from stage {stage}, which it never builds"
        else:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


@pytest.mark.parametrize("service", PLATFORM)
def test_every_service_command_exists(service: str) -> None:
    command = SERVICES[service]["command"]
    if command[0] == "headwater":
        args = build_parser().parse_args(command[1:])
        assert callable(args.handler)
    else:
        assert command[:2] == ["python", "-m"], f"{service}: run `headwater` or `python -m`"
        spec = importlib.util.find_spec(command[2])
        assert spec is not None and spec.origin is not None, f"{service}: no {command[2]}"
        origin = spec.origin
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            main = importlib.util.find_spec(f"{command[2]}.__main__")
            assert main is not None and main.origin is not None, f"{service}: no __main__"
            origin = main.origin
        assert '__name__ == "__main__"' in Path(origin).read_text()


@pytest.mark.parametrize("service", PLATFORM)
def test_every_headwater_variable_is_a_valid_setting(service: str) -> None:
    env = SERVICES[service]["environment"]
    fields = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name.removeprefix(ENV_PREFIX).lower()
        assert field in HeadwaterSettings.model_fields, f"{service}: unknown setting {name}"
        fields[field] = value
    settings = HeadwaterSettings(**fields)
    assert settings.kafka_mode == "external" and settings.warehouse_mode == "server"


def test_services_scale_and_wait_for_what_they_need() -> None:
    for name in PLATFORM:
        assert "container_name" not in SERVICES[name]
        if name not in ("dashboard", "init"):
            assert "ports" not in SERVICES[name], f"{name} publishes ports: --scale would clash"
    for name, service in SERVICES.items():
        for needed, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[needed], f"{name} waits on {needed}'s health"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name} mounts undeclared volume {source}"


def test_prometheus_scrapes_every_long_running_platform_service() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    discovery = config["scrape_configs"][0]["dns_sd_configs"][0]
    assert set(discovery["names"]) == set(PLATFORM) - {"init"}
    ports = {
        HeadwaterSettings(
            **{"metrics_port": s["environment"]["HEADWATER_METRICS_PORT"]}
        ).metrics_port
        for s in SERVICES.values()
        if s.get("image") == "headwater:latest"
    }
    assert ports == {discovery["port"]}


def test_grafana_dashboard_is_made_from_the_panels() -> None:
    committed = ROOT / "deploy" / "grafana" / "dashboards" / "headwater.json"
    remake = "python -m headwater.infra.dashboard.grafana > " + str(committed.relative_to(ROOT))
    assert committed.read_text() == render(), f"run `{remake}`"
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/clickhouse.yml").read_text()
    )
    source = provisioned["datasources"][0]
    assert source["uid"] == json.loads(committed.read_text())["panels"][0]["datasource"]["uid"]
    assert source["jsonData"]["defaultDatabase"] == DATABASE


@pytest.mark.integration
def test_grafana_queries_run_on_the_engine(warehouse: ChdbWarehouse) -> None:
    model = f"grafana-{uuid.uuid4().hex[:8]}"
    start = int(time.time() * 1000) - 60_000
    write_story(warehouse, loop_story(start, model), start, model)
    for panel in PANELS:
        # Grafana expands its time macro; here: the last hour, as the dashboard's default range.
        sql = grafana_sql(panel).replace("$__timeFilter(time)", "time >= now() - INTERVAL 1 HOUR")
        sql = sql.replace(f"{DATABASE}.", f"{warehouse.database}.")
        assert warehouse.query(sql).rows, f"Grafana panel {panel.key} returned no rows"
