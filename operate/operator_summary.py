"""What ``headwater status`` shows an operator at a glance: the supervised processes (restarts,
given up), consumer lag, the routing table, open alarms and the loop's last decisions, read from
the supervisor's state file, Kafka (lag, live) and the warehouse views.

>>> summary = OperatorSummary(lag=[{"group_id": "g", "topic": "events", "lag": 3}])
>>> print(summary.render().splitlines()[3])
group_id                       topic                          lag
>>> summary.unfixed = [{"model": "fraud", "requests": 3, "cap": 3, "since": "2026-01-01"}]
>>> print(summary.render().split(chr(10) * 2)[2])
models the loop cannot fix (retrain cap reached, still degraded)
model            requests  cap   since
fraud            3         3     2026-01-01
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from headwater.core.errors import HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.consumer_lag import sample_lag
from headwater.infra.dashboard.panels import loop_sql
from headwater.infra.local_processes import pid_alive
from headwater.infra.metrics import metrics_dir
from headwater.infra.warehouse import Warehouse
from headwater.operate.processes import supervised
from headwater.schemas.models import RETRAIN_CAP

LOOP_DECISIONS = 8


@dataclass
class OperatorSummary:
    """Lag per group and topic, current routing, open alarms, latest loop steps."""

    lag: list[dict[str, Any]] = field(default_factory=list)
    # The supervisor's processes: state, pid, restarts, last exit, why one was given up.
    processes: list[dict[str, Any]] = field(default_factory=list)
    routing: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    unfixed: list[dict[str, Any]] = field(default_factory=list)
    loop: list[dict[str, Any]] = field(default_factory=list)
    dashboard: str | None = None
    metrics: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def render(self) -> str:
        """A terminal table per section; empty sections say so in one line."""
        out = [_table(title, getattr(self, name), columns) for title, name, columns in _SECTIONS]
        if self.dashboard:
            out.append(f"dashboard  {self.dashboard}")
        out.extend(f"metrics    {url}" for url in self.metrics)
        out.extend(f"note: {error}" for error in self.errors)
        return "\n\n".join(out)


# (title, attribute, ((column, width), ...)) of each section of the terminal view.
_SECTIONS: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...] = (
    (
        "processes",
        "processes",
        (
            ("name", 16),
            ("state", 9),
            ("pid", 8),
            ("restarts", 9),
            ("last_exit", 10),
            ("note", 70),
        ),
    ),
    ("consumer lag", "lag", (("group_id", 30), ("topic", 30), ("lag", 8))),
    (
        "models the loop cannot fix (retrain cap reached, still degraded)",
        "unfixed",
        (("model", 16), ("requests", 9), ("cap", 5), ("since", 20)),
    ),
    (
        "routing",
        "routing",
        (("model", 16), ("version", 8), ("weight", 8), ("shadow", 7), ("reason", 30)),
    ),
    (
        "open alarms",
        "alarms",
        (
            ("model", 16),
            ("kind", 8),
            ("statistic", 12),
            ("feature", 14),
            ("value", 8),
            ("threshold", 10),
            ("severity", 9),
        ),
    ),
    ("last loop decisions", "loop", (("at", 20), ("model", 16), ("stage", 18), ("detail", 50))),
)


def _fmt(value: Any, width: int) -> str:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(title: str, rows: list[dict[str, Any]], columns: tuple[tuple[str, int], ...]) -> str:
    if not rows:
        return f"{title}: none"
    lines = [title, " ".join(f"{c:<{w}}" for c, w in columns).rstrip()]
    for row in rows:
        lines.append(" ".join(f"{_fmt(row.get(c, ''), w):<{w}}" for c, w in columns).rstrip())
    return "\n".join(lines)


def _lag(settings: HeadwaterSettings) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str], int] = {}
    for s in sample_lag(settings):
        totals[(s.group_id, s.topic)] = totals.get((s.group_id, s.topic), 0) + s.lag
    return [{"group_id": g, "topic": t, "lag": lag} for (g, t), lag in sorted(totals.items())]


def _clock(ms: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ms) / 1000))


def _from_views(summary: OperatorSummary, warehouse: Warehouse) -> None:
    db = warehouse.database
    summary.routing = warehouse.query(
        f"SELECT model, version, weight, shadow, reason, updated_at_ms FROM {db}.v_routing_current "
        "ORDER BY model, version"
    ).dicts()
    summary.alarms = warehouse.query(
        f"SELECT model, version, kind, statistic, feature, value, threshold, severity, "
        f"detected_at_ms FROM {db}.v_open_alarms ORDER BY detected_at_ms DESC LIMIT 20"
    ).dicts()
    unfixed = warehouse.query(
        f"SELECT model, max(value) AS requests, max(threshold) AS cap, "
        f"max(detected_at_ms) AS since_ms FROM {db}.v_open_alarms "
        f"WHERE statistic = '{RETRAIN_CAP}' GROUP BY model ORDER BY model"
    ).dicts()
    summary.unfixed = [
        {
            **row,
            "requests": int(row["requests"]),
            "cap": int(row["cap"]),
            "since": _clock(row["since_ms"]),
        }
        for row in unfixed
    ]
    loop = warehouse.query(loop_sql(LOOP_DECISIONS).replace("{db}", db)).dicts()
    summary.loop = [{**row, "at": _clock(row["at_ms"])} for row in loop]


def metrics_endpoints(settings: HeadwaterSettings) -> list[str]:
    """The ``/metrics`` URLs that live processes of this state directory recorded."""
    urls = []
    for record in sorted(metrics_dir(settings).glob("*.json")):
        try:
            info = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(int(info.get("pid", 0))):
            urls.append(f"{info['url']} ({info.get('role', '?')})")
    return urls


def operator_summary(
    settings: HeadwaterSettings,
    warehouse: Warehouse | None,
    dashboard: str | None = None,
    kafka_reachable: bool = True,
) -> OperatorSummary:
    """Collect what can be read; an unreachable part becomes a note, not a failure."""
    summary = OperatorSummary(dashboard=dashboard, metrics=metrics_endpoints(settings))
    summary.processes = [r.to_dict() for r in supervised(settings)]
    given_up = [r["name"] for r in summary.processes if r["state"] == "gave_up"]
    if given_up:
        summary.errors.append(
            f"the supervisor gave up on {', '.join(given_up)} after repeated crashes: "
            "see `headwater logs NAME`, fix, then `headwater up`"
        )
    try:
        # Asking an unreachable broker again would only add its timeout to `status`.
        summary.lag = _lag(settings) if kafka_reachable else []
    except HeadwaterError as error:
        summary.errors.append(f"lag: {error}")
    if warehouse is not None:
        try:
            _from_views(summary, warehouse)
        except HeadwaterError as error:
            summary.errors.append(f"views: {error}")
    return summary
