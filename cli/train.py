"""``headwater train``, ``headwater runs list | show`` and ``headwater retrain-worker``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from headwater.core.human_output import render
from headwater.core.settings import load_settings
from headwater.infra.warehouse import connect_warehouse


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train", help="train a model on a point-in-time dataset (once, or a search) and register it"
    )
    train.add_argument("--model", default="", help="default: HEADWATER_SERVING_MODEL")
    train.add_argument(
        "--feature-set", default="", help="default: the one HEADWATER_FEATURES declares"
    )
    train.add_argument("--trials", type=int, default=0, help="0: train once; N: search N trials")
    train.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local trial workers (default: as many as this machine takes, several per GPU; "
        "0: external)",
    )
    train.add_argument("--nproc", type=int, default=1, help="processes per run (torchrun DDP)")
    train.add_argument("--epochs", type=int, default=8)
    train.add_argument("--sampler", choices=["tpe", "gp", "cmaes", "random"], default="tpe")
    train.add_argument(
        "--objective",
        action="append",
        default=None,
        metavar="METRIC[:max]",
        help="objective(s) to minimise (':max' to maximise); repeat for multi-objective",
    )
    train.add_argument("--since-ms", type=int, default=0, help="labels from this event time")
    train.add_argument("--until-ms", type=int, default=0, help="labels before this event time")
    train.add_argument(
        "--max-feature-age-ms",
        type=int,
        default=None,
        help="leave out a label whose entity's latest features are older than this before it "
        "(default: HEADWATER_TRAINING_MAX_FEATURE_AGE_MS; 0: any age)",
    )
    train.add_argument("--wall-time", type=float, default=1800.0, help="search budget, seconds")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-warm-start", action="store_true")
    train.add_argument("--reason", default="manual")
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=_train)

    runs = subparsers.add_parser("runs", help="training runs and trials (from the warehouse)")
    actions = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="runs, newest first")
    listing.add_argument("--model", default="")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_runs_list)
    show = actions.add_parser("show", help="one run: parameters, metrics per step, lineage")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_runs_show)

    retrain = subparsers.add_parser(
        "retrain-worker", help="consume retrain-requests and retrain (one per model at a time)"
    )
    retrain.add_argument("--max-requests", type=int, default=None)
    retrain.add_argument("--idle-exit", type=float, default=None, help="exit after N idle seconds")
    retrain.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local trial workers per search (default: as many as this machine takes)",
    )
    retrain.add_argument("--json", action="store_true", help="print the count handled as JSON")
    retrain.set_defaults(handler=_retrain_worker)


def _objectives(specs: list[str] | None) -> tuple[Any, ...]:
    from headwater.trainers.search import Objective

    if not specs:
        return (Objective(),)
    objectives = []
    for spec in specs:
        metric, _, direction = spec.partition(":")
        objectives.append(Objective(metric, "maximize" if direction == "max" else "minimize"))
    return tuple(objectives)


def _train(args: argparse.Namespace) -> int:
    from headwater.trainers.pipeline import TrainRequest, train_model
    from headwater.trainers.trial_budget import machine_budget

    settings = load_settings()
    workers = args.workers
    if workers is None:
        workers = machine_budget(settings).workers if args.trials > 0 else 0
    request = TrainRequest(
        model=args.model or settings.serving_model,
        feature_set=args.feature_set,
        trials=args.trials,
        workers=workers,
        nproc=args.nproc,
        epochs=args.epochs,
        sampler=args.sampler,
        objectives=_objectives(args.objective),
        start_ms=args.since_ms,
        end_ms=args.until_ms,
        max_feature_age_ms=args.max_feature_age_ms,
        wall_time_s=args.wall_time,
        seed=args.seed,
        warm_start=not args.no_warm_start,
        reason=args.reason,
    )
    warehouse = connect_warehouse(settings)
    try:
        outcome = train_model(settings, request, warehouse)
    finally:
        warehouse.close()
    if args.json:
        print(json.dumps(outcome.to_dict()))
    else:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(outcome.metrics.items()))
        print(f"registered {outcome.model}@{outcome.version} from run {outcome.run_id}: {metrics}")
    return 0


def _runs_list(args: argparse.Namespace) -> int:
    from headwater.trainers.run_queries import list_runs

    warehouse = connect_warehouse(load_settings())
    try:
        runs = list_runs(warehouse, args.model, args.limit)
    finally:
        warehouse.close()
    if args.json:
        print(json.dumps(runs))
        return 0
    print("run_id\tkind\tmodel\tstatus\tstep\tstudy\tvalid_loss")
    for run in runs:
        loss = run["metrics"].get("valid_loss")
        shown = f"{loss:.4f}" if isinstance(loss, float) else "-"
        print(
            f"{run['run_id']}\t{run['kind']}\t{run['model']}\t{run['status']}\t{run['step']}\t"
            f"{run['study'] or '-'}\t{shown}"
        )
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    from headwater.trainers.run_queries import show_run

    warehouse = connect_warehouse(load_settings())
    try:
        run = show_run(warehouse, args.run_id)
    finally:
        warehouse.close()
    print(json.dumps(run) if args.json else render(run))
    return 0


def _retrain_worker(args: argparse.Namespace) -> int:
    from headwater.trainers.retrain import RetrainWorker
    from headwater.trainers.trial_budget import machine_budget

    settings = load_settings()
    workers = args.workers if args.workers is not None else machine_budget(settings).workers
    worker = RetrainWorker(settings, trial_workers=workers)
    handled = worker.run(max_requests=args.max_requests, idle_exit_s=args.idle_exit)
    print(json.dumps({"handled": handled}) if args.json else f"handled {handled} request(s)")
    return 0
