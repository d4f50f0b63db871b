"""Panel queries run on the warehouse and shaped for drawing: lines and bars become series of
points, tables stay rows. A failing query becomes the panel's error, never the page's.

>>> from headwater.infra.dashboard.panels import Panel
>>> panel = Panel("t", "T", "", "line", x="at", y="v", series="s")
>>> [(s.label, s.points) for s in to_series(panel, ["s", "at", "v"], [["b", 2, 1.0], ["a", 1, 3]])]
[('a', [(1.0, 3.0)]), ('b', [(2.0, 1.0)])]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from headwater.core.errors import WarehouseError
from headwater.infra.dashboard.panels import PANELS, Panel
from headwater.infra.sql_literals import render
from headwater.infra.supervision import ProcessRecord
from headwater.infra.warehouse import QueryResult, Warehouse


@dataclass(frozen=True)
class Series:
    """One line or one bar group: (x, y) points, x ascending."""

    label: str
    points: list[tuple[float | str, float]]


@dataclass(frozen=True)
class PanelData:
    """What one panel shows now."""

    key: str
    title: str
    kind: str
    description: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    error: str = ""

    @property
    def has_data(self) -> bool:
        return bool(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_series(panel: Panel, columns: list[str], rows: list[list[Any]]) -> list[Series]:
    """Group a chart panel's rows into one series per value of its series column."""
    x_at, y_at = columns.index(panel.x), columns.index(panel.y)
    s_at = columns.index(panel.series) if panel.series else None
    grouped: dict[str, list[tuple[float | str, float]]] = {}
    for row in rows:
        label = str(row[s_at]) if s_at is not None else panel.y
        x = row[x_at] if isinstance(row[x_at], str) else float(row[x_at])
        grouped.setdefault(label, []).append((x, float(row[y_at] or 0.0)))
    return [Series(label, sorted(grouped[label])) for label in sorted(grouped)]


def load_panel(warehouse: Warehouse, panel: Panel) -> PanelData:
    empty = PanelData(panel.key, panel.title, panel.kind, panel.description)
    try:
        result: QueryResult = warehouse.query(panel.query(warehouse.database))
    except WarehouseError as error:
        return replace(empty, error=str(error))
    rows = [[_plain(v) for v in row] for row in result.rows]
    series = to_series(panel, result.columns, rows) if panel.kind != "table" else []
    return replace(empty, columns=result.columns, rows=rows, series=series)


def load_panels(warehouse: Warehouse, panels: tuple[Panel, ...] = PANELS) -> list[PanelData]:
    return [load_panel(warehouse, panel) for panel in panels]


PROCESS_COLUMNS = ["prefix", "name", "state", "pid", "restarts", "last_exit", "note"]


def processes_panel(home: Path) -> PanelData:
    """The supervisors' view of the processes they run, every topic prefix under ``home``
    (their state files, :mod:`headwater.infra.supervision`): restarts, and any given up on."""
    rows = []
    for path in sorted(home.glob("supervisor*.json")):
        prefix = path.name.removeprefix("supervisor").removesuffix(".json").lstrip(".")
        try:
            records = [ProcessRecord.from_dict(d) for d in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            continue  # being replaced: the next refresh reads it
        for r in records:
            rows.append([prefix, r.name, r.state, r.pid, r.restarts, r.last_exit, r.note])
    return PanelData(
        "processes",
        "Supervised processes",
        "table",
        "What `headwater up` runs: state, restarts after crashes, any given up on",
        columns=PROCESS_COLUMNS,
        rows=rows,
    )


def _plain(value: Any) -> Any:
    """JSON-friendly values: ClickHouse's big integers may arrive as strings from chDB."""
    if isinstance(value, float | int | bool | str) or value is None:
        return value
    return str(value)


# The evidence behind each loop step: its table and the expression that names a row of it.
EVIDENCE_KEYS = {
    "drift": "alarm_id",
    "retrain_requests": "request_id",
    "runs": "run_id",
    "model_versions": "concat(model, '@', toString(version))",
    "routing": "concat(model, '@', toString(updated_at_ms))",
}


def load_evidence(warehouse: Warehouse, table: str, ref_id: str) -> QueryResult:
    """The rows of ``table`` behind one loop step, oldest first."""
    key = EVIDENCE_KEYS.get(table)
    if key is None:
        raise WarehouseError(
            f"no evidence table {table!r}; tables with evidence: {', '.join(EVIDENCE_KEYS)}"
        )
    db = warehouse.database
    return warehouse.query(
        f"SELECT * EXCEPT (_partition, _offset, _ingested_at) FROM {db}.{table} FINAL "
        f"WHERE {key} = {render(ref_id)} LIMIT 100"
    )
