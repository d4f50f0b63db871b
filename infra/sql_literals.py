"""ClickHouse SQL literals for Python values, for bulk ``INSERT … VALUES`` without expressions.

Bulk inserts send plain literals only: a function call per row made chDB 100× slower
(FIELD-NOTES.md).

>>> render({"a": 1.5}), render([1, 2]), render("it's"), render(None), render(True)
("{'a':1.5}", '[1,2]', "'it\\\\'s'", 'NULL', 'true')
>>> render(b"\\x00A")
"'\\\\x00A'"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

_ESCAPES = {
    ord("\\"): "\\\\",
    ord("'"): "\\'",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0: "\\0",
}


def _quote(text: str) -> str:
    return "'" + text.translate(_ESCAPES) + "'"


def _bytes(data: bytes) -> str:
    chars = (chr(b) if 32 <= b < 127 and b not in (39, 92) else f"\\x{b:02x}" for b in data)
    return "'" + "".join(chars) + "'"


def render(value: Any) -> str:
    """One value as a ClickHouse literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(bytes(value))
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{render(k)}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(render(v) for v in value) + "]"
    raise TypeError(f"no ClickHouse literal for a {type(value).__name__}: {value!r}")


def values_clause(rows: Sequence[Sequence[Any]]) -> str:
    """``(…),(…)`` for an ``INSERT … VALUES``."""
    return ",".join("(" + ",".join(render(v) for v in row) + ")" for row in rows)
