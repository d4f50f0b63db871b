"""``headwater models list | show | promote | rollback | archive``: the registry from the shell.

Every command rebuilds the registry by replaying ``model-versions``; the changing ones publish
one event with ``--reason`` and ``--actor`` (default: the login name).
"""

from __future__ import annotations

import argparse
import getpass
import json
from dataclasses import asdict
from typing import Any

from headwater.core.human_output import render
from headwater.core.settings import load_settings
from headwater.trainers.registry import ModelRegistry, replay_state
from headwater.trainers.registry_state import RegistryState, VersionState


def register(commands: Any) -> None:
    listing = commands.add_parser("list", help="registered models and their versions")
    listing.add_argument("model", nargs="?", default="", help="only this model")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="one model: versions, aliases, history")
    show.add_argument("model")
    show.add_argument("--version", type=int, default=None)
    show.add_argument("--at", type=int, default=None, help="champion at this time (epoch ms)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)

    for action, help_text in (
        ("promote", "make a version the champion"),
        ("rollback", "roll back a version (default: the champion); the previous one serves"),
        ("archive", "retire a version for good"),
    ):
        parser = commands.add_parser(action, help=help_text)
        parser.add_argument("model")
        parser.add_argument("version", type=int, nargs="?" if action == "rollback" else None)
        parser.add_argument("--reason", required=True)
        parser.add_argument("--actor", default="")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(handler=_change, action=action)


def _version_dict(version: VersionState) -> dict[str, Any]:
    return asdict(version)


def _model_dict(state: RegistryState, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "aliases": state.aliases(model),
        "versions": [_version_dict(v) for v in state.versions(model)],
    }


def _list(args: argparse.Namespace) -> int:
    state = replay_state(load_settings())
    models = [args.model] if args.model else state.models()
    described = [_model_dict(state, m) for m in models]
    if args.json:
        print(json.dumps(described))
        return 0
    print("model\tversion\tstage\taliases\trun_id\tmetrics")
    for entry in described:
        by_version: dict[int, list[str]] = {}
        for alias, version in entry["aliases"].items():
            by_version.setdefault(version, []).append(alias)
        for v in entry["versions"]:
            metrics = ",".join(f"{k}={val:.4g}" for k, val in sorted(v["metrics"].items()))
            aliases = ",".join(by_version.get(v["version"], [])) or "-"
            print(
                f"{v['model']}\t{v['version']}\t{v['stage']}\t{aliases}\t{v['run_id']}\t{metrics}"
            )
    return 0


def _show(args: argparse.Namespace) -> int:
    state = replay_state(load_settings())
    if args.version is not None:
        described: dict[str, Any] = _version_dict(state.version(args.model, args.version))
    else:
        described = _model_dict(state, args.model)
        described["alias_history"] = [asdict(c) for c in state.alias_history(args.model)]
    if args.at is not None:
        described["champion_at"] = {
            "at_ms": args.at,
            "version": state.champion_at(args.model, args.at),
        }
    print(json.dumps(described) if args.json else render(described))
    return 0


def _change(args: argparse.Namespace) -> int:
    registry = ModelRegistry.open(load_settings())
    actor = args.actor or getpass.getuser()
    if args.action == "promote":
        changed = registry.promote(args.model, args.version, reason=args.reason, actor=actor)
    elif args.action == "rollback":
        changed = registry.rollback(args.model, args.version, reason=args.reason, actor=actor)
    else:
        changed = registry.archive(args.model, args.version, reason=args.reason, actor=actor)
    result = {**_version_dict(changed), "aliases": registry.state.aliases(args.model)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model}@{changed.version}: {changed.stage}; aliases {result['aliases']}")
    return 0
