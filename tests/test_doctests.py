"""Every docstring example of the ``headwater`` package and of the benchmarks runs, module by
module.

Modules are imported by their installed names (``headwater.streams.windows``), the way users
import them; pytest's own doctest collection would import the folders a second time under their
bare names.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from tests.test_layers import MODULES

BENCH = Path(__file__).resolve().parent.parent / "bench"
# The benchmarks' pure helpers (ratios, percentiles, plans) are doctested like the package's.
BENCH_MODULES = sorted(
    f"bench.{path.stem}" for path in BENCH.glob("*.py") if path.stem != "__init__"
)


@pytest.mark.parametrize("name", [*sorted(MODULES), *BENCH_MODULES])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
