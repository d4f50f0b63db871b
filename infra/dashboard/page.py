"""Server-rendered HTML of the dashboard: tables are rendered here, charts are canvases that
``static/dashboard.js`` draws with the vendored Chart.js from the same data, then refreshes.

>>> from headwater.infra.dashboard.data import PanelData
>>> html = render_page([PanelData("routing", "Current routing", "table", columns=["model"],
...                                rows=[["fraud"]])], refresh_s=5)
>>> '<td>fraud</td>' in html and 'data-refresh-s="5"' in html
True
"""

from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import urlencode

import orjson

from headwater.infra.dashboard.data import PanelData
from headwater.infra.warehouse import QueryResult

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
</head>"""


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column.endswith("_ms") and isinstance(value, int | float) and value > 0:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value / 1000))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _link(row: dict[str, Any]) -> str:
    query = urlencode({"table": row["ref_table"], "id": row["ref_id"]})
    return f'<a href="/evidence?{html.escape(query)}">{html.escape(str(row["ref_table"]))}</a>'


def render_table(panel: PanelData) -> str:
    """A table panel's rows; the loop timeline's rows link to their evidence."""
    if not panel.rows:
        return '<p class="empty">no data yet</p>'
    columns = [c for c in panel.columns if c not in ("ref_table", "ref_id")]
    evidence = "ref_table" in panel.columns
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    head += "<th>evidence</th>" if evidence else ""
    body = []
    for values in panel.rows:
        row = dict(zip(panel.columns, values, strict=True))
        cells = "".join(f"<td>{html.escape(_cell(c, row[c]))}</td>" for c in columns)
        cells += f"<td>{_link(row)}</td>" if evidence else ""
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _panel(panel: PanelData) -> str:
    error = f'<p class="error">{html.escape(panel.error)}</p>' if panel.error else ""
    note = f'<p class="note">{html.escape(panel.description)}</p>' if panel.description else ""
    if panel.kind == "table":
        content = f'<div class="table" id="table-{panel.key}">{render_table(panel)}</div>'
    else:
        content = f'<div class="chart"><canvas id="chart-{panel.key}"></canvas></div>'
    points = sum(len(s.points) for s in panel.series) if panel.kind != "table" else len(panel.rows)
    return (
        f'<section class="panel {panel.kind}" id="panel-{panel.key}" data-kind="{panel.kind}" '
        f'data-points="{points}"><h2>{html.escape(panel.title)}</h2>{note}{error}{content}'
        "</section>"
    )


def render_page(panels: list[PanelData], refresh_s: float, title: str = "Headwater") -> str:
    """The whole dashboard with the current data inlined, so it draws before the first poll."""
    initial = orjson.dumps([p.to_dict() for p in panels]).decode().replace("</", "<\\/")
    return (
        _HEAD.format(title=html.escape(title))
        + f'<body data-refresh-s="{refresh_s:g}"><header><h1>{html.escape(title)}</h1>'
        '<span id="updated"></span></header><main>'
        + "".join(_panel(p) for p in panels)
        + '</main><script id="initial-data" type="application/json">'
        + initial
        + '</script><script src="/static/chart.umd.min.js"></script>'
        '<script src="/static/dashboard.js"></script></body></html>'
    )


def render_evidence(table: str, ref_id: str, result: QueryResult) -> str:
    """The rows behind one loop step, one card per row."""
    cards = []
    for row in result.dicts():
        items = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(_cell(k, v))}</td></tr>"
            for k, v in row.items()
        )
        cards.append(f"<table class='evidence'>{items}</table>")
    body = "".join(cards) or '<p class="empty">no rows</p>'
    title = f"{table} {ref_id}"
    return (
        _HEAD.format(title=html.escape(title))
        + f'<body><header><h1><a href="/">Headwater</a> › {html.escape(title)}</h1></header>'
        f"<main class='evidence'>{body}</main></body></html>"
    )
