"""Rendering a command's result for people: what ``headwater`` prints without ``--json``.

With ``--json`` a command prints one JSON document on stdout; without it, the same content as
indented ``key: value`` lines.

>>> print(render({"model": "fraud", "aliases": {"champion": 2}, "versions": [1, 2]}))
model: fraud
aliases:
  champion: 2
versions: [1, 2]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def render(value: Mapping[str, Any], indent: int = 0) -> str:
    """``value`` as ``key: value`` lines, nested mappings indented; lists of scalars inline,
    lists of mappings as ``-`` items."""
    pad = "  " * indent
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            lines.append(f"{pad}{key}:")
            if item:
                lines.append(render(item, indent + 1))
        elif isinstance(item, list) and any(isinstance(i, Mapping) for i in item):
            lines.append(f"{pad}{key}:")
            for entry in item:
                body = render(entry, indent + 2) if isinstance(entry, Mapping) else str(entry)
                lines.append(f"{pad}  -\n{body}")
        else:
            lines.append(f"{pad}{key}: {_scalar(item)}")
    return "\n".join(lines)


def _scalar(item: Any) -> str:
    if item is None:
        return "-"
    if isinstance(item, str):
        return item
    return json.dumps(item, default=str)
