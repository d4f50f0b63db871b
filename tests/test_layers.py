"""Layers you can see: each subpackage of ``headwater`` imports only from the layers below it.

The order (docs/architecture.md): errors and settings (``core``) → event contracts (``schemas``)
→ Kafka, warehouse and other I/O (``infra``) → features, training, serving → the loop → the
platform's operation and the demo → the command line. Within the middle layer, ``trainers`` may
use ``streams`` (one definition of a feature, offline too) and ``serving`` may use both.
The public API (``headwater/__init__.py`` and ``headwater.client``) sits under the CLI, which
uses it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom first. A module may import its own subpackage and anything in an earlier entry.
LAYERS: tuple[str, ...] = (
    "core",
    "schemas",
    "infra",
    "streams",
    "trainers",
    "serving",
    "loop",
    "operate",
    "api",  # headwater/__init__.py and headwater/client.py
    "demo",
    "cli",
)
FOLDERS = tuple(layer for layer in LAYERS if layer != "api")


def layer_of(module: str) -> str | None:
    """``headwater.streams.worker`` → ``streams``; the package root and the client → ``api``."""
    parts = module.split(".")
    if parts[0] != "headwater":
        return None
    if len(parts) == 1 or parts[1] not in FOLDERS:
        return "api"
    return parts[1]


def modules() -> dict[str, Path]:
    """Every module of the namespace by its installed name, from the repository's folders."""
    found = {}
    for folder in (*FOLDERS, "headwater"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if folder == "headwater":
                parts = parts[1:]
            if parts and parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(["headwater", *parts])] = path
    return found


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from headwater import client` names a module of the root package
            found += [(node.lineno, f"{name}.{a.name}") for a in node.names if name == "headwater"]
    return found


MODULES = modules()


def test_every_folder_is_a_package_the_wheel_installs() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    assert mapping == {"headwater": "headwater", **{f"headwater.{f}": f for f in FOLDERS}}
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert set(config["packages"]) == packages


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_only_downward(module: str) -> None:
    own = layer_of(module)
    assert own is not None
    rank = LAYERS.index(own)
    upward = []
    for line, name in imports_of(MODULES[module], module):
        top = name.split(".")[0]
        if top in (*FOLDERS, "tests", "bench"):
            upward.append(f"line {line}: `{name}` is not under `headwater.`")
            continue
        target = layer_of(name)
        if target is not None and LAYERS.index(target) > rank:
            upward.append(f"line {line}: {own} imports {name} ({target} is above {own})")
    assert not upward, f"{module}: " + "; ".join(upward)


def test_the_layer_test_can_fail() -> None:
    assert layer_of("headwater.cli.main") == "cli"
    assert LAYERS.index("cli") > LAYERS.index(layer_of("headwater.streams.worker") or "")
    assert layer_of("headwater.client") == "api"
