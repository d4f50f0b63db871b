"""Headwater's hot-path Avro codec (Rust): see native/src/lib.rs."""

from typing import Any

class AvroType:
    """One Avro schema compiled from its plan (``schemas.avro_plan.plan_of``)."""

    def __init__(self, plan: Any, name: str = "record") -> None: ...
    @property
    def name(self) -> str: ...
    def encode(self, datum: Any, prefix: bytes | None = None) -> bytes:
        """The Avro binary encoding of ``datum`` after ``prefix``; ValueError names the field."""
    def decode(self, data: bytes, start: int = 0) -> Any:
        """The datum in ``data[start:]``, which it must fill exactly; ValueError otherwise."""
    def decode_columns(
        self, values: list[bytes], start: int = 0
    ) -> (
        tuple[
            list[tuple[str, tuple[str, int, bytes | None, list[bytes], list[Any]]]],
            list[tuple[int, str]],
        ]
        | None
    ):
        """Each field of the records in ``values`` (each read from ``start``) as ``(name,
        column)``, a column in Arrow's layout (``streams.columnar.arrow_array`` wraps it), and
        ``(index, why)`` of each record that does not decode (left out of the columns, why as
        :meth:`decode` says it); None where the schema is not a record of the types it
        covers."""

class FeatureReader:
    """A feature set's built-in features compiled from ``streams.native_features.plan_of``."""

    def __init__(self, plan: tuple[list[Any], list[Any], list[str]]) -> None: ...
    def read(
        self, times: list[int], columns: list[list[Any]], t: int, missing: float
    ) -> dict[str, float] | None:
        """The values as of ``t`` in declaration order; None where Python must read instead."""

class RowMatrix:
    """Rows of named values (dicts) as one float64 matrix: see native/src/rows.rs."""

    def __init__(self, names: list[str]) -> None: ...
    @property
    def names(self) -> list[str]: ...
    def build(self, rows: list[Any]) -> bytes:
        """The rows as a float64 matrix, column after column (``len(names)`` runs of
        ``len(rows)`` values): NaN where a row lacks a name or holds None; TypeError naming
        the feature for a value that is not a number."""

class PageHinkley:
    """Page–Hinkley on increases of an error stream: see native/src/detectors.rs."""

    def __init__(
        self, threshold: float, delta: float, min_instances: int, alpha: float
    ) -> None: ...
    def update(self, error: float) -> bool: ...
    @property
    def since_change(self) -> int: ...
    @property
    def value(self) -> float: ...
