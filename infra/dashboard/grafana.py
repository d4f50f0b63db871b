"""The Grafana dashboard, made from the same panels as the built-in one (:mod:`.panels`).

``python -m headwater.infra.dashboard.grafana > deploy/grafana/dashboards/headwater.json``
remakes the repository's copy (the module writes to standard output, never into a checkout); a
test checks the committed file is what this module makes, so the two dashboards can't drift.
Queries go to the ClickHouse data source provisioned in ``deploy/grafana/provisioning``.

>>> board = grafana_dashboard()
>>> board["uid"], len(board["panels"]) == len(PANELS)
('headwater', True)
>>> board["panels"][0]["targets"][0]["rawSql"].startswith("SELECT fromUnixTimestamp64Milli(")
True
"""

from __future__ import annotations

import json
import sys
from typing import Any

from headwater.infra.dashboard.panels import PANELS, Panel

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "headwater-clickhouse"}
DATABASE = "headwater"
# Grafana's ClickHouse plugin: format 0 is a time series, 1 a table.
_FORMAT = {"line": 0, "bar": 1, "table": 1}
_TYPE = {"line": "timeseries", "bar": "barchart", "table": "table"}


def grafana_sql(panel: Panel) -> str:
    """The panel's query as Grafana wants it: time series get a ``time`` column (DateTime64)
    and Grafana's time filter; the rest run as they are."""
    sql = panel.query(DATABASE)
    if panel.kind != "line":
        return sql
    series = f"{panel.series}, " if panel.series else ""
    return (
        f"SELECT fromUnixTimestamp64Milli(toInt64({panel.x})) AS time, {series}{panel.y} "
        f"FROM ({sql}) WHERE $__timeFilter(time) ORDER BY time"
    )


def _panel(panel: Panel, index: int) -> dict[str, Any]:
    width = 24 if panel.kind == "table" else 12
    position = {"h": 8, "w": width, "x": 0 if width == 24 else (index % 2) * 12, "y": index * 8}
    # A time series with a string column is drawn one line per value (the plugin's long to wide),
    # as the built-in dashboard draws its series column.
    return {
        "id": index + 1,
        "title": panel.title,
        "description": panel.description,
        "type": _TYPE[panel.kind],
        "datasource": DATASOURCE,
        "gridPos": position,
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "format": _FORMAT[panel.kind],
                "rawSql": grafana_sql(panel),
            }
        ],
    }


def grafana_dashboard() -> dict[str, Any]:
    """The dashboard model Grafana's file provisioning loads."""
    return {
        "uid": "headwater",
        "title": "Headwater",
        "tags": ["headwater"],
        "timezone": "utc",
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": 39,
        "editable": True,
        "panels": [_panel(panel, index) for index, panel in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(grafana_dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
