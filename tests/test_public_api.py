"""The public API is what ``headwater.__all__`` lists: each name exists, is documented, and
importing it stays cheap (after httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import headwater


def test_all_exported_members_exist_and_are_documented() -> None:
    for name in headwater.__all__:
        member = getattr(headwater, name)  # AttributeError names a listed but missing member
        if name == "__version__":
            assert isinstance(member, str)
            continue
        assert member.__module__.startswith("headwater."), name
        assert inspect.getdoc(member), f"headwater.{name} has no docstring"


def test_every_public_method_of_the_client_is_documented() -> None:
    for name, member in inspect.getmembers(headwater.Client):
        if not name.startswith("_") and callable(member):
            assert inspect.getdoc(member), f"Client.{name} has no docstring"


def test_the_feature_api_is_complete() -> None:
    wanted = {
        "FeatureSet", "Window", "Count", "Sum", "Mean", "Min", "Max", "StdDev",
        "CountDistinct", "LastValue", "LastN", "TimeSinceLast", "Ratio",
        "Constraints", "FieldConstraint", "Client",
    }  # fmt: skip
    assert wanted <= set(headwater.__all__)


def test_importing_headwater_loads_no_torch_and_no_web_server() -> None:
    code = (
        "import sys, headwater; headwater.Client; "
        "print(sorted(m for m in ('torch', 'fastapi', 'chdb', 'uvicorn') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
