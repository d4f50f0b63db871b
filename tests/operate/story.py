"""A small, consistent run of the closed loop as typed events, and a writer that lands them in
the warehouse tables the way the sink does (one row per record, with ``_partition``/``_offset``).

Traffic on model v1, a drift alarm, a retrain request, an HPO study, v2 registered and put on
canary, routing shifted, v2 promoted; plus a few rejected records and lag snapshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from headwater.infra.migrations import table_for_topic
from headwater.infra.warehouse import Warehouse
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import (
    DriftAlarm,
    Event,
    EventModel,
    Label,
    Metric,
    ModelVersion,
    Prediction,
    RetrainRequest,
    Routing,
    Run,
)

MODEL = "fraud"
RunStatus = Literal["started", "running", "completed", "failed", "pruned"]


def _traffic(start_ms: int, count: int, model: str) -> Iterator[tuple[str, EventModel]]:
    for i in range(count):
        at = start_ms + i * 400
        canary = i % 4 == 3
        version = 2 if canary else 1
        route: Literal["champion", "canary"] = "canary" if canary else "champion"
        entity = f"card-{i % 7}"
        yield (
            "events",
            Event(
                event_id=f"e{i}",
                entity_id=entity,
                event_type="transaction",
                event_time_ms=at,
                numeric={"amount": 10.0 + i},
                categorical={"country": "NL"},
                source_partition=0,
                source_offset=i,
            ),
        )
        yield (
            "predictions",
            Prediction(
                request_id=f"e{i}",
                entity_id=entity,
                model=model,
                version=version,
                route=route,
                output=(i % 10) / 10 + 0.05,
                features={"amount": 10.0 + i},
                event_time_ms=at,
                served_at_ms=at + 20 + i % 5,
                latency_ms=1.0 + (i % 3) / 2,
            ),
        )
        yield (
            "labels",
            Label(
                request_id=f"e{i}",
                entity_id=entity,
                label=float(i % 2),
                event_time_ms=at,
                labeled_at_ms=at + 1000,
            ),
        )


def _quality(start_ms: int, model: str) -> Iterator[tuple[str, EventModel]]:
    for w in range(4):
        begin = start_ms + w * 5000
        for version, route, auc in ((1, "champion", 0.9 - w * 0.05), (2, "canary", 0.92)):
            yield (
                "metrics",
                Metric(
                    model=model,
                    version=version,
                    route=route,
                    metric="auc",
                    value=auc,
                    window="5s",
                    window_start_ms=begin,
                    window_end_ms=begin + 5000,
                    count=12,
                ),
            )


def _loop(start_ms: int, model: str) -> Iterator[tuple[str, EventModel]]:
    yield (
        "routing",
        Routing(
            model=model,
            weights={"1": 1.0},
            reason="initial",
            actor="registry",
            updated_at_ms=start_ms,
        ),
    )
    yield (
        "model-versions",
        ModelVersion(
            model=model, version=1, action="promoted", reason="first", event_time_ms=start_ms
        ),
    )
    alarm = DriftAlarm(
        alarm_id=f"{model}-a1",
        model=model,
        version=1,
        feature="amount",
        kind="data",
        statistic="psi",
        value=0.4,
        threshold=0.2,
        window_size=50,
        window_start_ms=start_ms,
        window_end_ms=start_ms + 8000,
        severity="critical",
        detected_at_ms=start_ms + 8000,
    )
    yield "drift", alarm
    yield (
        "retrain-requests",
        RetrainRequest(
            request_id="rr1",
            model=model,
            reason="drift on amount",
            alarm_ids=[f"{model}-a1"],
            requested_at_ms=start_ms + 8500,
            trials=2,
        ),
    )
    outcomes: tuple[RunStatus, ...] = ("completed", "pruned")
    for trial, outcome in enumerate(outcomes):
        steps: tuple[tuple[int, RunStatus], ...] = ((0, "started"), (3, outcome))
        for step, state in steps:
            yield (
                "runs",
                Run(
                    run_id=f"{model}-t{trial}",
                    kind="trial",
                    model=model,
                    study=f"{model}-s1",
                    trial_number=trial,
                    status=state,
                    step=step,
                    params={"lr": 0.01 * (trial + 1)},
                    metrics={"val_auc": 0.9 + trial / 100},
                    event_time_ms=start_ms + 9000 + step,
                ),
            )
    yield (
        "model-versions",
        ModelVersion(
            model=model,
            version=2,
            action="registered",
            run_id=f"{model}-t0",
            event_time_ms=start_ms + 9500,
        ),
    )
    yield (
        "model-versions",
        ModelVersion(model=model, version=2, action="canary", event_time_ms=start_ms + 9600),
    )
    yield (
        "routing",
        Routing(
            model=model,
            weights={"1": 0.75, "2": 0.25},
            reason="canary",
            actor="canary-controller",
            updated_at_ms=start_ms + 9600,
        ),
    )
    yield (
        "model-versions",
        ModelVersion(
            model=model,
            version=2,
            action="promoted",
            reason="auc 0.92 > 0.80",
            event_time_ms=start_ms + 19000,
        ),
    )
    yield (
        "routing",
        Routing(
            model=model,
            weights={"2": 1.0},
            reason="promoted",
            actor="canary-controller",
            updated_at_ms=start_ms + 19000,
        ),
    )
    yield (
        "drift",
        alarm.model_copy(
            update={
                "alarm_id": f"{model}-a2",
                "severity": "warning",
                "value": 0.25,
                "version": 2,
                "detected_at_ms": start_ms + 20000,
            }
        ),
    )


def _rejects(start_ms: int) -> Iterator[tuple[str, EventModel]]:
    for i, code in enumerate(("schema", "schema", "missing_field")):
        yield (
            "deadletter",
            dead_letter(
                "events.raw",
                0,
                i,
                code,
                f"record {i} is not a Transaction",
                None,
                b"\x00{bad",
                start_ms + i,
            ),
        )


def loop_story(
    start_ms: int, model: str = MODEL, predictions: int = 40
) -> list[tuple[str, EventModel]]:
    """The story's records as (topic, event), in the order they would be produced."""
    return [
        *_traffic(start_ms, predictions, model),
        *_quality(start_ms, model),
        *_loop(start_ms, model),
        *_rejects(start_ms),
    ]


def _row(record: EventModel) -> dict[str, Any]:
    row = record.model_dump()
    if isinstance(record, Run):
        row["params"] = {k: str(v) for k, v in record.params.items()}
    return row


def write_story(
    warehouse: Warehouse, records: list[tuple[str, EventModel]], start_ms: int, model: str = MODEL
) -> int:
    """Insert the records as the sink would; offsets continue from what each table holds.
    Also writes lag snapshots of two consumer groups named after the first record's model.
    Returns the rows written."""
    by_table: dict[str, list[dict[str, Any]]] = {}
    for topic, record in records:
        row = _row(record)
        if topic in ("events", "predictions"):
            row["_topic"] = f"{model}-{topic}"  # the full topic name, as the sink writes it
        by_table.setdefault(table_for_topic(topic), []).append(row)
    written = 0
    for table, rows in by_table.items():
        db = warehouse.database
        base = int(warehouse.query(f"SELECT count() FROM {db}.{table}").scalar())
        columns = [*rows[0], "_partition", "_offset"]
        values = [[*row.values(), 0, base + i] for i, row in enumerate(rows)]
        written += warehouse.insert(table, columns, values)
    raw = [["card-1", '{"amount": 1}', start_ms + i * 250, "", 0, i] for i in range(20)]
    # the raw records of the story's events: each arrived 5 ms after its event time
    raw += [
        [e["entity_id"], "{}", e["event_time_ms"] + 5, f"{model}-events.raw", 0, e["source_offset"]]
        for e in by_table.get("events", [])
    ]
    written += warehouse.insert(
        "events_raw", ["key", "value", "kafka_timestamp_ms", "_topic", "_partition", "_offset"], raw
    )
    lag = [
        [start_ms + s * 2000, group, "events", p, 100 + s * 10, 90 + s * 9 + p, 10 + s - p]
        for s in range(5)
        for group in (f"{model}-features", f"{model}-sink")
        for p in range(3)
    ]
    columns = [
        "observed_at_ms",
        "group_id",
        "topic",
        "partition",
        "end_offset",
        "committed_offset",
        "lag",
    ]
    return written + warehouse.insert("consumer_lag", columns, lag)
