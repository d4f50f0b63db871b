"""Backward compatibility of Avro schemas: can a consumer with the new schema read old records?

Follows the Avro specification's schema-resolution rules. The committed history lives in
``schemas/history/<full name>/vN.avsc``; ``python -m headwater.schemas.compat --snapshot`` records
the
current schemas as new versions where they changed, after checking them.

>>> old = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]}
>>> new = {"type": "record", "name": "A", "fields": [
...     {"name": "x", "type": "long"}, {"name": "y", "type": "string"}]}
>>> backward_problems(new, old)
["A.y: field added without a default; old records don't have it"]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from headwater.schemas.catalog import AVRO_DIR, HISTORY_DIR, AvroSchema

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return (
            str(schema["type"])
            if schema["type"] in ("record", "enum", "array", "map", "fixed")
            else _kind(schema["type"])
        )
    return str(schema)


def backward_problems(reader: Any, writer: Any, path: str = "") -> list[str]:
    """Every reason a reader of ``reader`` can't decode data written with ``writer``."""
    rk, wk = _kind(reader), _kind(writer)
    here = path or (reader.get("name", "") if isinstance(reader, dict) else rk)
    if wk == "union":
        return [
            p
            for branch in writer
            for p in backward_problems(reader, branch, here)
            if rk != "union" or not _union_has(reader, branch)
        ]
    if rk == "union":
        if any(not backward_problems(branch, writer, here) for branch in reader):
            return []
        return [f"{here}: no branch of the new union reads old type {wk}"]
    if rk in _PROMOTIONS or wk in _PROMOTIONS:
        return [] if rk in _PROMOTIONS.get(wk, {wk}) else [f"{here}: type {wk} became {rk}"]
    if rk != wk:
        return [f"{here}: type {wk} became {rk}"]
    if rk == "record":
        return _record_problems(reader, writer, here)
    if rk == "array":
        return backward_problems(reader["items"], writer["items"], f"{here}[]")
    if rk == "map":
        return backward_problems(reader["values"], writer["values"], f"{here}{{}}")
    if rk == "enum":
        lost = set(writer["symbols"]) - set(reader["symbols"])
        if lost and "default" not in reader:
            return [f"{here}: enum symbols removed without a default: {sorted(lost)}"]
    if rk == "fixed" and reader["size"] != writer["size"]:
        return [f"{here}: fixed size {writer['size']} became {reader['size']}"]
    return []


def _union_has(union: list[Any], branch: Any) -> bool:
    return any(not backward_problems(r, branch) for r in union)


def _record_problems(reader: dict[str, Any], writer: dict[str, Any], here: str) -> list[str]:
    problems: list[str] = []
    old = {f["name"]: f for f in writer["fields"]}
    for field in reader["fields"]:
        name = f"{here}.{field['name']}"
        if field["name"] in old:
            problems += backward_problems(field["type"], old[field["name"]]["type"], name)
        elif "default" not in field:
            problems.append(f"{name}: field added without a default; old records don't have it")
    return problems


def history_of(name: str) -> list[Path]:
    """The committed versions of one schema, oldest first."""
    folder = HISTORY_DIR / name
    return sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))


def check_all() -> list[str]:
    """Problems of every current schema against every committed version of it."""
    problems: list[str] = []
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        schema = AvroSchema.from_file(path)
        versions = history_of(schema.name)
        if not versions:
            problems.append(f"{schema.name}: no committed history (run --snapshot)")
            continue
        for version in versions:
            old = json.loads(version.read_text())
            problems += [f"{version.name}: {p}" for p in backward_problems(schema.source, old)]
        if AvroSchema.from_file(versions[-1]).canonical != schema.canonical:
            problems.append(f"{schema.name}: changed since {versions[-1].name} (run --snapshot)")
    return problems


def snapshot() -> list[Path]:
    """Record each changed, compatible schema as the next version of its history."""
    written: list[Path] = []
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        schema = AvroSchema.from_file(path)
        versions = history_of(schema.name)
        if versions and AvroSchema.from_file(versions[-1]).canonical == schema.canonical:
            continue
        for version in versions:
            problems = backward_problems(schema.source, json.loads(version.read_text()))
            if problems:
                raise SystemExit(f"{path.name} is not backward compatible: {problems}")
        target = HISTORY_DIR / schema.name / f"v{len(versions) + 1}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", action="store_true", help="record changed schemas")
    args = parser.parse_args()
    if args.snapshot:
        for path in snapshot():
            print(f"recorded {path}")
    problems = check_all()
    print("\n".join(problems) or "all schemas are backward compatible with their history")
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
