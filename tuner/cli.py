"""``tuner``: run, resume, validate and report studies from the shell.

Exit codes: 0 success, 1 the study failed or found no usable value of its metric, 2 invalid
input, 130 interrupted (Ctrl-C or SIGTERM; `tuner resume` continues it), 141 the reader of
our output went away (``tuner prices | head -1``).
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tuner.config import DEFAULT_REGION
from tuner.errors import ConfigError, StudyError, TunerError

if TYPE_CHECKING:
    from tuner.spot.local import WorkerType

_EXIT_INPUT, _EXIT_STUDY, _EXIT_INTERRUPTED, _EXIT_PIPE = 2, 1, 130, 141  # 141: SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tuner", description=__doc__.splitlines()[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the study an experiment YAML describes")
    p.add_argument("experiment", help="experiment YAML (see examples/digits_mlp.yaml)")
    p.add_argument("--name", help="study name (default: from the file, or space and time)")
    p.add_argument("--num-samples", type=int, help="override num_samples")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p = sub.add_parser("resume", help="continue a study whose driver stopped")
    p.add_argument("path", help="the study directory, e.g. tuner_results/<name>")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--budget-usd", type=float, metavar="USD",
                   help="raise the study's budget (a study stopped by its budget goes on)")
    p = sub.add_parser("validate", help="check an experiment or search space YAML")
    p.add_argument("file", help="an experiment, search space or Ray cluster YAML")
    p = sub.add_parser("report", help="print the per-trial table of a study")
    p.add_argument("path", help="the study directory, e.g. tuner_results/<name>")
    p.add_argument("--aws", action="store_true",
                   help="also list the AWS cluster's instances (lifecycle, type, uptime) next "
                        "to our figures (the study's aws_cluster, or --cluster)")
    p.add_argument("--cluster", help="the Ray cluster_name on AWS (default: aws_cluster)")
    p = sub.add_parser("dashboard", help="open optuna-dashboard on a study's Optuna journal")
    p.add_argument("path", help="the study directory, e.g. tuner_results/<name>")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    p = sub.add_parser("estimate", help="expected $ and time of a study, before it runs")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("--seconds-per-iteration", type=float,
                   help="declared seconds per iteration (else the experiment's, or --from)")
    p.add_argument("--from", dest="from_study", metavar="PATH",
                   help="measure seconds per iteration from a finished study")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker nodes the trials run on at once (default: one, or as many as "
                        "max_concurrent_trials fills)")
    p.add_argument("--instance-type", metavar="TYPE",
                   help="the workers' and head's instance type (default: the experiment's "
                        "default_instance_type)")
    p = sub.add_parser("watch-preemption", help="on a spot node: drain it on an interruption notice")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "127.0.0.1:6379"),
                   help="the cluster's GCS address (default: RAY_ADDRESS or 127.0.0.1:6379)")
    p.add_argument("--node-id", help="this node's Ray id (default: the local raylet's)")
    p.add_argument("--imds", default=os.environ.get("TUNER_IMDS_ENDPOINT",
                                                    "http://169.254.169.254"),
                   help="instance metadata endpoint (env TUNER_IMDS_ENDPOINT)")
    p.add_argument("--margin", type=float, default=15.0,
                   help="drain deadline this many seconds before the termination time "
                        "(default: %(default)s)")
    p.add_argument("--interval", type=float, default=5.0,
                   help="seconds between polls (default: %(default)s)")
    p = sub.add_parser("cluster", help="a local spot cluster: Ray nodes on this machine")
    p.add_argument("action", choices=["up"])
    p.add_argument("--local", action="store_true", required=True,
                   help="on this machine (the only kind `tuner cluster` starts; use `ray up` "
                        "with cluster/aws-spot.yaml for AWS)")
    p.add_argument("--worker", action="append", metavar="TYPE:MARKET[:CPUS[:ZONE]]",
                   help="a worker node, e.g. c5.xlarge:spot:1 (repeatable; default: two spot "
                        "workers of two types and one on-demand)")
    p.add_argument("--hazard", type=float, default=0.0,
                   help="spot preemptions per node-hour, in simulated time (default 0)")
    p.add_argument("--time-scale", type=float, default=60.0,
                   help="simulated seconds per real second (default 60: a 2-minute notice "
                        "lasts 2 s)")
    p.add_argument("--head-cpus", type=int, default=0,
                   help="CPUs the head offers to trials (default 0: trials run on workers, "
                        "as on a cloud cluster's on-demand head)")
    p.add_argument("--dashboard", action="store_true", help="start the dashboard (for ray job submit)")
    p.add_argument("--address-file", help="write the cluster address here once it is up")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the simulated spot market (default: %(default)s)")
    p.add_argument("--ignore-notices", action="store_true",
                   help="run no preemption watcher: spot nodes die without a drain (to "
                        "measure what acting on notices saves)")
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                   help="remove a worker none of whose resources has been in use for this "
                        "many real seconds, and start its kind again when a trial waits for "
                        "resources (the autoscaler's idle_timeout_minutes; default: never, "
                        "the workers asked for stay up)")
    p = sub.add_parser("prices", help="show the $/hour a study will be charged")
    p.add_argument("--region", default=DEFAULT_REGION, help="AWS region (default: %(default)s)")
    p.add_argument("--type", action="append", dest="types", metavar="INSTANCE_TYPE",
                   help="only these instance types (repeatable)")
    p.add_argument("--prices", help="a price CSV instead of the shipped catalog")
    p.add_argument("--refresh", action="store_true",
                   help="fetch current AWS prices now (spot history, Pricing API)")
    args = parser.parse_args(argv)
    try:
        code = _COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        if not _reader_gone():
            raise  # some other pipe broke: not ours to hide
        # `tuner prices | head -1`: stop quietly, and keep Python's flush at exit quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _EXIT_PIPE
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_INPUT
    except TunerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_STUDY
    except KeyboardInterrupt as exc:
        print(f"interrupted {exc}" if str(exc) else
              "interrupted; continue with `tuner resume <study dir>`", file=sys.stderr)
        return _EXIT_INTERRUPTED


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader closed it (the pipe then polls as an error)."""
    import select

    poll = select.poll()
    poll.register(sys.stdout.fileno(), select.POLLOUT)
    return any(event & select.POLLERR for _, event in poll.poll(0))


def _run(args: argparse.Namespace) -> int:
    from tuner import api
    from tuner.config import load_experiment, with_overrides

    exp = load_experiment(args.experiment)
    settings = exp.settings
    overrides = {k: v for k, v in (("name", args.name), ("num_samples", args.num_samples))
                 if v is not None}
    if overrides:
        settings = with_overrides(settings, "command line", **overrides)
    trainable = exp.load_trainable()
    result = api.run(trainable, exp.space, settings, trainable_ref=exp.trainable,
                     base_dir=exp.base_dir, verbose=not args.quiet, source=exp.source)
    return _summary(result)


def _resume(args: argparse.Namespace) -> int:
    from tuner import api

    return _summary(api.resume(args.path, verbose=not args.quiet, budget_usd=args.budget_usd))


def _validate(args: argparse.Namespace) -> int:
    from tuner._files import read_yaml, shown
    from tuner.config import load_experiment
    from tuner.search_space import load_space
    from tuner.summary import count

    data = read_yaml(args.file)
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a YAML {type(data).__name__}"
        raise ConfigError(shown(args.file), "",
                          f"is {what}; `tuner validate` reads a mapping: an experiment "
                          "(trainable:, space:, metric:), a search space (a parameter name "
                          "per key) or a Ray cluster config (available_node_types:)")
    if "available_node_types" in data:
        from tuner.spot.cluster_config import check_cluster_config

        config = check_cluster_config(args.file)
        print(f"{args.file}: valid Ray cluster config ({', '.join(config['available_node_types'])})")
    elif "trainable" in data or "space" in data:
        from tuner.api import refuse_existing

        exp = load_experiment(args.file)
        exp.load_trainable()
        refuse_existing(exp.settings, exp.space, exp.source)  # as `tuner run` would
        print(f"{args.file}: valid experiment ({count(len(exp.space.params), 'parameter')}, "
              f"{count(exp.settings.num_samples, 'trial')}, "
              f"{'maximise' if exp.settings.mode == 'max' else 'minimise'} {exp.settings.metric})")
    else:
        space = load_space(args.file)
        print(f"{args.file}: valid search space ({count(len(space.params), 'parameter')}: "
              f"{', '.join(p.name for p in space.params)}"
              + (f"; constant {', '.join(space.constants)}" if space.constants else "") + ")")
    return 0


def _report(args: argparse.Namespace) -> int:
    from tuner.record import StudyRecord
    from tuner.result import TuneResult
    from tuner.summary import best_lines, mlflow_lines

    result = TuneResult.load(args.path)
    print(result.table())
    if result.best_trial_id is not None:
        print("", *best_lines(result), sep="\n")
    print("\n" + "\n".join(mlflow_lines(result)))  # the runs, and metric against cost
    if args.aws:
        settings = StudyRecord.load(os.path.abspath(args.path)).study_settings()
        cluster = args.cluster or settings.aws_cluster
        if not cluster:
            raise ConfigError("--aws", "", "which cluster? pass --cluster NAME (the cluster_name "
                              "of your launcher YAML), or set aws_cluster in the experiment")
        _aws_report(cluster, settings.region, settings.prices)
    return 0


def _aws_report(cluster: str, region: str, prices: str | None) -> None:
    """The cluster's instances as AWS lists them, priced from the catalog, to set beside
    the study's own figures."""
    from datetime import UTC, datetime

    from tuner.cost.catalog import Market, PriceCatalog
    from tuner.cost.live import cluster_instances
    from tuner.summary import columns, money

    catalog, now = PriceCatalog.load(prices), datetime.now(UTC)
    rows = [["instance", "type", "lifecycle", "zone", "launched (UTC)", "uptime h", "at catalog $",
             "study tag"]]
    total = 0.0
    for i in cluster_instances(cluster, region):
        hours = i.uptime_s(now) / 3600
        usd = hours * catalog.get(i.instance_type, region).hourly(Market(i.lifecycle))
        total += usd
        rows.append([i.instance_id, i.instance_type, i.lifecycle, i.zone,
                     i.launched.strftime("%Y-%m-%d %H:%M"), f"{hours:.2f}", money(usd),
                     i.study or "-"])
    print(f"\nAWS: {len(rows) - 1} instances of cluster {cluster!r} in {region} "
          f"(since launch, at catalog prices: {money(total)})")
    print("\n".join(columns(rows)))


def _summary(result: object) -> int:
    """Print the table and the best trial; exit 1 when no trial has a usable metric value."""
    from tuner.result import TuneResult
    from tuner.summary import best_lines, mlflow_lines

    assert isinstance(result, TuneResult)
    print(result.table())
    why = result.why_no_best()
    if why is not None:
        print(f"\nNo best trial: {why}")
    else:
        print("", *best_lines(result), sep="\n")
    print("\n".join(mlflow_lines(result)))
    if result.state == "interrupted":
        return _EXIT_INTERRUPTED
    return 0 if why is None else _EXIT_STUDY


def _dashboard(args: argparse.Namespace) -> int:
    """Serve optuna-dashboard (an optional dependency) on the study's Optuna journal: trials
    COMPLETE or PRUNED, with their intermediate values, as the study told Optuna."""
    import importlib.util
    import warnings

    from tuner.record import OPTUNA_JOURNAL, StudyRecord

    record = StudyRecord.load(os.path.abspath(args.path))
    journal = record.optuna_storage or os.path.join(record.path, OPTUNA_JOURNAL)
    if not os.path.exists(journal):
        raise TunerError(f"{args.path}: no Optuna journal at {journal} (the study has not "
                         f"started a trial yet)")
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise TunerError("optuna-dashboard is not installed; install it with: pip install -c "
                         "constraints.txt 'spot-tuner[ui]'  (or: pip install optuna-dashboard)")
    import optuna
    from optuna.storages.journal import JournalFileBackend
    from optuna_dashboard import run_server

    storage = optuna.storages.JournalStorage(JournalFileBackend(journal))
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if study.metric_names is None and len(study.directions) == 1:
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                warnings.simplefilter("ignore")
                study.set_metric_names([record.metric])  # the value axis says what it is
    print(f"optuna-dashboard on {journal}: http://{args.host}:{args.port}/  (Ctrl-C stops it)",
          flush=True)
    try:
        run_server(storage, host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tuner.config import load_experiment, with_overrides
    from tuner.estimate import duration, estimate, measured_seconds_per_iteration
    from tuner.record import StudyRecord
    from tuner.summary import count, money

    exp = load_experiment(args.experiment)
    spi, source = args.seconds_per_iteration, "declared on the command line"
    if spi is not None and not spi > 0:  # NaN too
        raise ConfigError("command line", "--seconds-per-iteration",
                          f"must be a number of seconds > 0, got {spi:g}")
    if spi is None and args.from_study:
        spi = measured_seconds_per_iteration(StudyRecord.load(args.from_study).meter)
        if spi is None:
            raise StudyError(f"{args.from_study}: no iteration of that study was measured (no "
                             f"trial reported); --from a study whose trials reported, or pass "
                             f"--seconds-per-iteration S")
        source = f"measured in {args.from_study}"
    if spi is None and exp.settings.seconds_per_iteration:
        spi, source = exp.settings.seconds_per_iteration, f"declared in {exp.source}"
    if spi is None or spi <= 0:
        raise ConfigError(exp.source, "seconds_per_iteration", "is needed for an estimate; "
                          "declare it in the file, pass --seconds-per-iteration S, or "
                          "--from a finished study to measure it")
    if args.workers is not None and args.workers < 1:
        raise ConfigError("command line", "--workers", f"must be a whole number >= 1, got "
                          f"{args.workers}")
    if args.instance_type:
        exp = replace(exp, settings=with_overrides(exp.settings, "command line",
                                                   default_instance_type=args.instance_type))
    e = estimate(exp.settings, spi, source=exp.source, workers=args.workers)
    s = exp.settings
    print(f"{exp.source}: {count(s.num_samples, 'trial')}, ASHA max_t={s.max_t} grace={s.first_rung} "
          f"eta={s.reduction_factor:g}: about {e.iterations:.0f} iterations of {spi:.3g} s "
          f"({source})")
    print(f"on {e.instance_type} in {e.region}, {count(e.concurrency, 'trial')} at a time: "
          f"{'' if e.wall_seconds < 1 else 'about '}{duration(e.wall_seconds)} of training "
          f"(plus the cluster's start: seconds locally, minutes on a cloud)")
    print(f"  {'workers':9}  {'trials':>12}  {'cluster bill':>12}")
    for market, usd in e.usd.items():
        bill = (e.cluster_usd or {}).get(market, 0.0)
        print(f"  {market:9}  {money(usd):>12}  {money(bill):>12}")
    print(f"(trials: their node-seconds; cluster bill: {count(e.workers, e.instance_type + ' worker')}"
          f" and an on-demand {e.instance_type} head for the whole study; restarts add to both;"
          f" --workers N and --instance-type TYPE for another cluster)")
    if s.budget_usd:
        figures = e.cluster_usd if s.budget_scope == "cluster" else e.usd
        what = "cluster bill" if s.budget_scope == "cluster" else "trials' dollars"
        shares = ", ".join(f"{100 * usd / s.budget_usd:.0f}% of it with {market} workers"
                           for market, usd in (figures or {}).items())
        print(f"budget_usd {money(s.budget_usd)} caps the {what}; the estimate is {shares} "
              f"(over 100%: the study stops scheduling work before it passes the cap)")
    return 0


def _watch(args: argparse.Namespace) -> int:
    import logging

    from tuner.spot.imds import InstanceMetadata
    from tuner.spot.watcher import PreemptionWatcher, gcs_drain

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    host, _, port = args.address.rpartition(":")
    try:  # Ray's driver would retry a dead address for minutes, printing C++ warnings
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise StudyError(f"--address {args.address}: no Ray cluster answers there ({exc}); "
                         f"run this on a node of a running cluster, with its head's GCS "
                         f"address (host:6379, or RAY_ADDRESS)") from None
    node_id = args.node_id
    if node_id is None:
        import ray

        ray.init(address=args.address, log_to_driver=False, logging_level=logging.WARNING)
        node_id = ray.get_runtime_context().get_node_id()
        ray.shutdown()
    watcher = PreemptionWatcher(node_id, InstanceMetadata(args.imds), gcs_drain(args.address),
                                margin_s=args.margin)
    print(f"watching {args.imds} for node {node_id[:8]}", flush=True)
    notice = watcher.run(interval_s=args.interval)
    print(f"drained node {node_id[:8]}: {notice}", flush=True)
    return 0


def _cluster(args: argparse.Namespace) -> int:
    import signal
    import threading

    from tuner._files import write_json_atomic
    from tuner.spot.local import DEFAULT_WORKERS, LocalSpotCluster
    from tuner.summary import count

    workers: tuple[WorkerType, ...] = DEFAULT_WORKERS
    if args.worker:
        workers = tuple(_worker_type(w) for w in args.worker)
    for flag, value, ok, rule in (
            ("--hazard", args.hazard, 0 <= args.hazard < math.inf, ">= 0 (e.g. --hazard 0.6)"),
            ("--time-scale", args.time_scale, 0 < args.time_scale < math.inf,
             "> 0 (e.g. --time-scale 60)"),
            ("--head-cpus", args.head_cpus, args.head_cpus >= 0, ">= 0 (e.g. --head-cpus 0)"),
            ("--idle-timeout", args.idle_timeout,
             args.idle_timeout is None or 0 < args.idle_timeout < math.inf,
             "> 0 (e.g. --idle-timeout 60)")):
        if not ok:
            raise ConfigError(flag, "", f"must be a finite number {rule}, got {value:g}")
    stop = threading.Event()
    cluster = LocalSpotCluster(workers, hazard_per_hour=args.hazard, time_scale=args.time_scale,
                               head_cpus=args.head_cpus, dashboard=args.dashboard,
                               seed=args.seed, act_on_notices=not args.ignore_notices,
                               idle_timeout_s=args.idle_timeout).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        info = {"address": cluster.address, "dashboard": cluster.dashboard_url,
                "temp_dir": cluster.temp_dir}
        if args.address_file:
            write_json_atomic(args.address_file, info)
        print(f"local spot cluster up: {count(len(workers), 'worker')}, {args.hazard:g} preemptions per "
              f"node-hour at {args.time_scale:g}x"
              + (f", idle workers removed after {args.idle_timeout:g} s" if args.idle_timeout
                 else "")
              + f"\n  export RAY_ADDRESS={cluster.address} "
              f"RAY_AUTH_MODE=token"
              + (f"\n  RAY_AUTH_MODE=token ray job submit --address {cluster.dashboard_url} "
                 f"--working-dir . -- python your_script.py"
                 if cluster.dashboard_url else "")
              + "\nCtrl-C (or SIGTERM) stops it.", flush=True)
        cluster.run(stop, lambda event, node: print(f"[cluster] {event} {node[:8]}", flush=True))
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


def _worker_type(text: str) -> WorkerType:
    from tuner.cost.catalog import Market, PriceCatalog
    from tuner.spot.local import WorkerType

    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise ConfigError("--worker", "", f"expected TYPE:MARKET[:CPUS[:ZONE]], got {text!r}")
    PriceCatalog.load().get(parts[0], DEFAULT_REGION)
    market = Market.parse(parts[1], "--worker", "market").value
    cpus = parts[2] if len(parts) > 2 else "1"
    if not cpus.isdigit() or int(cpus) < 1:
        raise ConfigError("--worker", "CPUS", f"must be a whole number >= 1, got {cpus!r} in "
                          f"{text!r}; e.g. {parts[0]}:{parts[1]}:1")
    return WorkerType(parts[0], market, int(cpus), parts[3] if len(parts) > 3 else "us-east-1a")


def _prices(args: argparse.Namespace) -> int:
    from tuner.cost.catalog import Market, PriceCatalog
    from tuner.cost.live import live_catalog
    from tuner.summary import columns

    catalog = PriceCatalog.load(args.prices)
    if args.region not in catalog.regions:
        catalog.get("", args.region)  # raises the error naming the known regions
    for kind in args.types or []:
        catalog.get(kind, args.region)
    catalog, note = live_catalog(catalog, args.region, refresh=args.refresh,
                                 offline=not args.refresh)
    rows = [["instance_type", "vCPU", "GPU", "on-demand $/h", "spot $/h", "saving", "source"]]
    sources: dict[str, int] = {}  # each source once, below the table, by number
    def cite(source: str) -> str:
        return f"[{sources.setdefault(source, len(sources) + 1)}]"

    for p in catalog:
        if p.region != args.region or (args.types and p.instance_type not in args.types):
            continue
        saving = 100 * (1 - p.spot_usd_hour / p.on_demand_usd_hour) if p.on_demand_usd_hour else 0
        rows.append([p.instance_type, str(p.vcpus), str(p.gpus), f"{p.on_demand_usd_hour:.4f}",
                     f"{p.spot_usd_hour:.4f}", f"{saving:.0f}%",
                     f"on-demand {cite(p.source(Market.ON_DEMAND))}, spot {cite(p.source(Market.SPOT))}"])
    print(f"{args.region}: {note}")
    print("\n".join(columns(rows)))
    print("\n".join(f"[{n}] {source}" for source, n in sources.items()))
    return 0


_COMMANDS = {"run": _run, "resume": _resume, "validate": _validate, "report": _report,
             "prices": _prices, "estimate": _estimate,
             "watch-preemption": _watch, "cluster": _cluster, "dashboard": _dashboard}

if __name__ == "__main__":
    sys.exit(main())
