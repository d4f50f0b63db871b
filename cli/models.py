"""``headwater models …``: the model registry and routing commands, gathered under one group.

Each module in MODELS_COMMAND_MODULES adds its subcommands with ``register(subparsers)``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Modules that add ``models`` subcommands (the registry's, routing's).
MODELS_COMMAND_MODULES: tuple[str, ...] = (
    "headwater.trainers.registry_cli",
    "headwater.serving.route_cli",
)


def register(subparsers: Any) -> None:
    if not MODELS_COMMAND_MODULES:
        return
    models = subparsers.add_parser("models", help="model versions, stages and routing")
    commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    for name in MODELS_COMMAND_MODULES:
        importlib.import_module(name).register(commands)
