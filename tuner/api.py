"""The Python API: ``tuner.tune`` runs a study, ``tuner.resume`` continues one."""

from __future__ import annotations

import contextlib
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

from tuner.config import (
    BUDGET_FIGURES,
    StudySettings,
    check_trainable,
    import_trainable,
    settings_from,
    with_overrides,
)
from tuner.errors import ConfigError, MetricNotReported, StudyError, TunerError
from tuner.lock import LOCK_FILE, StudyLock
from tuner.record import OPTUNA_JOURNAL, RECORD_FILE, StudyRecord, StudyState
from tuner.result import TuneResult
from tuner.search_space import SearchSpace, load_space, parse_space
from tuner.tracking import DEFAULT_URI, Tracker, flush_all, masked, probe, sqlite_file


def tune(trainable: Callable[..., Any],
         space: str | os.PathLike[str] | Mapping[str, Any] | SearchSpace, *,
         metric: str, verbose: bool = True, **settings: Any) -> TuneResult:
    """Tune ``trainable`` over ``space`` with Optuna's TPE and ASHA on Ray Tune.

    Args:
        trainable: a Ray Tune function trainable, ``train(config)``, that reports with
            ``tune.report`` (or ``tuner.report``) once per iteration.
        space: a space YAML path, a dict of the same shape, or a ``SearchSpace``.
        metric: what to optimise (``mode="max"`` or ``"min"``).
        verbose: print one progress line as the study advances.
        **settings: any field of :class:`tuner.config.StudySettings`, which documents each
            and holds its default -- the same keys as an experiment YAML: ``mode``,
            ``num_samples``, ``max_t``, ``grace_period`` (default 2), ``reduction_factor`` (ASHA over
            ``training_iteration``), ``tpe_multivariate`` (``False``: independent TPE, the
            default the benchmark chose), ``tpe_n_ei_candidates`` (1024 draws per suggestion),
            ``tpe_n_startup_trials`` (5 random trials before TPE chooses),
            ``max_failures``, ``resources_per_trial``,
            ``max_concurrent_trials``, ``storage_path`` (a directory or ``s3://...``),
            ``name``, ``mlflow_uri``, ``mlflow_experiment``, ``seed`` (``None``: random,
            printed), ``checkpoints_to_keep``, ``ray_address``, ``budget_usd``,
            ``budget_scope``, ``budget_alerts``, ``region``, ``default_instance_type``, ``default_market``,
            ``prices``, ``live_prices``, ``seconds_per_iteration``, ``aws_cluster``.

    Returns:
        The study's best config and metric, and one row per trial.

    Raises:
        ConfigError: an invalid argument or space (nothing is run or recorded).
        StudyError: the study could not run; the message says what to do next.
    """
    if not callable(trainable):
        raise ConfigError("tune()", "trainable", f"must be a function train(config), got "
                          f"{type(trainable).__name__}")
    check_trainable(trainable, "tune()")
    resolved = settings_from({"metric": metric, **settings}, "tune()")
    if isinstance(space, (str, os.PathLike)) and not os.path.exists(space):
        raise ConfigError("tune()", "space", f"file {os.fspath(space)!r} not found (looked at "
                          f"{os.path.abspath(space)}); pass a space YAML's path or a dict")
    result = run(trainable, load_space(space), resolved, verbose=verbose)
    if verbose and result.state == "interrupted":
        name = getattr(trainable, "__name__", "train")
        print(f"[tuner] study {os.path.basename(result.path)} interrupted; continue it with "
              f"tuner.resume({result.path!r}, trainable={name})", flush=True)
    return result


def run(trainable: Callable[..., Any], space: SearchSpace, settings: StudySettings,
        trainable_ref: str | None = None, base_dir: str = ".",
        verbose: bool = True, source: str = "tune()") -> TuneResult:
    """Run a study from validated parts (what ``tune`` and ``tuner run`` share); errors in
    ``settings`` name ``source``."""
    from tuner import engine

    engine.check_address(settings.ray_address)
    remote = is_remote(settings.storage_path)
    base = _base(verbose)
    _check_writable(settings, source, remote, base)
    # The record and the Optuna journal stay with the driver (on-demand head); checkpoints
    # and Tune's experiment state go to storage_path, local or s3://.
    results = results_dir(settings, base)
    refuse_existing(settings, space, source, base)  # before Ray starts; again under the lock
    try:
        engine.preflight(settings, source)
    except KeyboardInterrupt:
        raise KeyboardInterrupt("before the study started; nothing was recorded") from None
    name, path = _study_dir(results, settings.name, _stem(space.source))
    tune_path = f"{settings.storage_path.rstrip('/')}/{name}" if remote else path
    with StudyLock(path):
        _refuse_existing(path, name, source, space)
        if settings.seed is None:
            settings = replace(settings, seed=random.SystemRandom().randrange(2**31))
            if verbose:
                print(f"[tuner] seed {settings.seed} (random; seed={settings.seed} repeats "
                      f"the search)", flush=True)
        uri = absolute_uri(settings.mlflow_uri or DEFAULT_URI, base)
        experiment = settings.mlflow_experiment or name
        params = {k: v for k, v in asdict(settings).items() if v is not None}
        # The record first: whatever fails after it, `tuner resume` finds the study.
        record = StudyRecord.create(
            path, name=name, metric=settings.metric, mode=settings.mode,
            num_samples=settings.num_samples, max_t=settings.max_t, mlflow_uri=uri,
            mlflow_experiment=experiment, parent_run_id="",
            trainable=trainable_ref or _reference(trainable), base_dir=os.path.abspath(base_dir),
            settings=params, tune_path=tune_path,
            space=space.to_dict(), optuna_storage=os.path.join(path, OPTUNA_JOURNAL))
        try:
            tracker = Tracker(uri, experiment)  # fails fast if unreachable
        except TunerError:  # nothing ran: leave no study behind to resume
            for file in (RECORD_FILE, LOCK_FILE):
                os.remove(os.path.join(path, file))
            with contextlib.suppress(OSError):
                os.rmdir(path)  # unless it holds something of the user's
            raise
        record.parent_run_id = tracker.start_study(name, {**params, "name": name},
                                                   space.to_dict())
        record.save()
        if verbose:
            print(f"[tuner] study {name}: {settings.num_samples} trials of {space.source}, "
                  f"{settings.metric} ({settings.mode}); state in {path}; MLflow runs in "
                  f"{masked(uri)}", flush=True)
        try:
            engine.run_study(trainable, space, settings, path, tune_path, verbose=verbose)
        except MetricNotReported as exc:  # the metric is a setting: say where it was set
            raise MetricNotReported(f"{source}: metric: {exc}") from None
        finally:
            _close(path, tracker)
    return TuneResult.load(path)


def results_dir(settings: StudySettings, base: str = ".") -> str:
    """Where studies' directories go: ``storage_path`` (relative to ``base``), or, when
    that is remote, ``tuner_results`` beside the driver."""
    remote = is_remote(settings.storage_path)
    return os.path.abspath(os.path.join(base, "tuner_results" if remote
                                        else settings.storage_path))


def refuse_existing(settings: StudySettings, space: SearchSpace, source: str,
                    base: str = ".") -> None:
    """Refuse ``settings.name`` if a study of that name exists (``tuner validate`` too)."""
    if settings.name:
        path = os.path.join(results_dir(settings, base), settings.name)
        _refuse_existing(path, settings.name, source, space)


def _refuse_existing(path: str, name: str, source: str, space: SearchSpace) -> None:
    """A name is a study's: the settings name the one on record, not this run's."""
    if not StudyRecord.exists(path):
        return
    try:
        same = parse_space(StudyRecord.load(path).space).to_dict() == space.to_dict()
    except TunerError:  # a record this version cannot read: nothing to say of its space
        same = True
    raise ConfigError(source, "name", f"a study named {name!r} exists already in {path}"
                      f"{'' if same else ' (with another search space)'}; `tuner resume "
                      f"{path}` continues it as recorded, or choose another name")


def _check_writable(settings: StudySettings, source: str, remote: bool, base: str) -> None:
    """Refuse a local storage_path or sqlite mlflow_uri the study could not write, before
    it makes anything there (relative ones resolve against ``base``), and a tracking server
    that does not answer."""
    why = None if remote else _unwritable_dir(os.path.join(base, settings.storage_path))
    if why:
        raise ConfigError(source, "storage_path", f"{settings.storage_path!r} cannot hold the "
                          f"study ({why}); pass a directory you can write to")
    uri = settings.mlflow_uri or DEFAULT_URI
    db = sqlite_file(absolute_uri(uri, base))
    if db is not None:
        why = (f"{db} is a directory" if os.path.isdir(db) else f"{db} is not writable"
               if os.path.exists(db) and not os.access(db, os.R_OK | os.W_OK)
               else _unwritable_dir(os.path.dirname(db)))
        if why:
            raise ConfigError(source, "mlflow_uri", f"{uri!r} cannot be written ({why}); pass "
                              f"a sqlite:/// path in a directory you can write to, e.g. "
                              f"sqlite:///mlflow.db")
    try:
        probe(uri)  # a server that does not answer: refused before Ray starts
    except StudyError as exc:
        raise ConfigError(source, "mlflow_uri", str(exc)) from None


def _unwritable_dir(path: str) -> str | None:
    """Why no file can be written in directory ``path`` (made if missing), or None."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # a missing directory is made in the nearest one there
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    try:  # root passes os.access where the file system still refuses (/proc, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".tuner-probe-", dir=existing))
    except OSError as exc:
        return f"cannot make a directory in {existing} ({exc.strerror or exc})"
    return None


def _study_dir(results: str, name: str | None, stem: str) -> tuple[str, str]:
    """The study's name and directory. A default name (the space's name and the time) is
    made unique by creating its directory: two studies started in the same second get
    ``...-HHMMSS`` and ``...-HHMMSS-2``."""
    if name:
        return name, os.path.join(results, name)
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    os.makedirs(results, exist_ok=True)
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        try:
            os.mkdir(os.path.join(results, candidate))
        except FileExistsError:
            continue
        return candidate, os.path.join(results, candidate)
    raise StudyError(f"{results}: no free study name after {base}-999; pass a name")


def absolute_uri(uri: str, base: str = ".") -> str:
    """A tracking URI that means the same store from any working directory: a relative
    ``sqlite:///mlflow.db`` (or a bare path) becomes absolute, resolved against ``base``."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(os.path.join(base, uri[len("sqlite:///"):]))
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        return os.path.abspath(os.path.join(base, uri))
    return uri


def _base(verbose: bool) -> str:
    """What a study's relative paths (``storage_path``, a sqlite ``mlflow_uri``) resolve
    against: the working directory, except in the driver of a Ray job submitted with
    ``--working-dir``, which runs in a copy Ray deletes with its session. There, the home
    directory (Ray Tune keeps ``~/ray_results`` for the same reason), where ``ray attach``
    lands and ``tuner report tuner_results/<name>`` finds the study."""
    from tuner import ray_compat

    if not ray_compat.job_working_dir():
        return os.getcwd()
    home = os.path.expanduser("~")
    if verbose:
        print(f"[tuner] this job runs in a temporary copy of its working_dir: the study's "
              f"relative paths are kept under {home} instead", flush=True)
    return home


def resume(path: str, trainable: Callable[..., Any] | None = None,
           ray_address: str | None = None, verbose: bool = True,
           budget_usd: float | None = None) -> TuneResult:
    """Continue the study at ``path`` after its driver stopped (killed, crashed, interrupted).

    Finished trials are not run again; running ones restart from their last checkpoint;
    the Optuna study, ASHA's rungs and the MLflow runs are the same as before.
    """
    from tuner import engine

    path = os.path.abspath(path)
    StudyRecord.load(path)  # a path without a study: say so before the lock makes its folder
    with StudyLock(path):
        record = StudyRecord.load(path)
        source = os.path.join(path, RECORD_FILE)
        settings = record.study_settings()
        # a study its budget stopped goes on with new trials: the ones it had started stay
        budget_raised = (set(record.trials) if budget_usd is not None
                         and record.stop_reason == "budget" else None)
        if budget_usd is not None:  # checked as the command line's, then kept in the record
            settings = with_overrides(settings, "command line", budget_usd=budget_usd)
            if budget_raised is not None and len(record.trials) >= record.num_samples:
                never = sum(1 for t in record.trials.values() if t.iterations == 0)
                raise StudyError(
                    f"{path}: a raised budget goes on with new trials up to num_samples, and all "
                    f"{record.num_samples} have started (the ones stopped at the budget stay "
                    f"stopped{f'; {never} never reported' if never else ''}), so it would run "
                    f"nothing; for more trials, start a new study (`tuner run` with another "
                    f"name and a higher num_samples)")
            record.settings["budget_usd"] = settings.budget_usd
            record.stop_reason = None
        elif record.stop_reason == "metric":  # the trainable may report it now; if not,
            record.stop_reason = None          # the study stops again at its first result
        elif record.stop_reason == "budget":
            spent = record.cost.get(BUDGET_FIGURES[settings.budget_scope], 0.0)
            raise StudyError(
                f"{path}: the study finished at its budget ({settings.budget_scope} "
                f"${spent:.4g} of ${settings.budget_usd:g}); to go on, raise it: "
                f"`tuner resume {path} --budget-usd <more>` (tuner.resume(..., budget_usd=...))")
        if record.state == StudyState.FINISHED and budget_raised is None:
            if verbose:
                print(f"[tuner] study {record.name} finished already ({len(record.trials)} "
                      f"trials); nothing to resume", flush=True)
            return TuneResult.load(path)
        engine.check_address(ray_address or settings.ray_address)
        if trainable is None:
            ref = record.trainable
            if not ref:
                raise StudyError(f"{path}: the study's trainable is not importable by name; "
                                 f"call tuner.resume({path!r}, trainable=your_function)")
            trainable = import_trainable(ref, source=source,
                                         base_dir=record.base_dir)
        else:
            check_trainable(trainable, "resume()")
        tracker = Tracker(record.mlflow_uri, record.mlflow_experiment)
        if record.parent_run_id:
            tracker.reopen_study(record.parent_run_id)
        else:  # the driver stopped between the record and the MLflow run
            record.parent_run_id = tracker.start_study(record.name, record.settings,
                                                       record.space)
        record.state = StudyState.RUNNING
        record.resumes += 1
        record.save()
        tune_path = record.tune_path or path
        address = ray_address or settings.ray_address
        try:
            if engine.can_restore(tune_path):
                if verbose:
                    print(f"[tuner] resuming study {record.name} from {path}",
                          flush=True)
                engine.resume_study(trainable, path, tune_path,
                                    replace(settings, ray_address=address), budget_raised,
                                    verbose=verbose)
            else:
                _forget_unsnapshotted(record, tracker)
                if verbose:
                    print(f"[tuner] study {record.name}: Ray Tune saved no state "
                          f"before its driver stopped; starting its trials again in {path}",
                          flush=True)
                engine.run_study(trainable, parse_space(record.space, source=source),
                                 replace(settings, ray_address=address), path, tune_path,
                                 verbose=verbose)
        finally:
            _close(path, tracker)
    return TuneResult.load(path)


def _forget_unsnapshotted(record: StudyRecord, tracker: Tracker) -> None:
    """Trials of a driver that stopped before Tune's first snapshot cannot be continued:
    close their MLflow runs as stopped and start the study's trials afresh."""
    from tuner import engine

    for trial in record.trials.values():
        if trial.mlflow_run_id:
            tracker.end_run(trial.mlflow_run_id, "stopped",
                            {"tuner.note": "driver stopped before Ray Tune's first snapshot"})
    record.trials = {}
    record.save()
    engine.fail_running_optuna_trials(record.path)


def _close(path: str, tracker: Tracker) -> None:
    """Mark the study finished (or interrupted); put its totals and plot on the parent run."""
    record = StudyRecord.load(path)
    counts = record.counts()
    stopped_by_budget = record.stop_reason == "budget"
    finished = counts["running"] == counts["interrupted"] == 0 and (
        len(record.trials) >= record.num_samples or stopped_by_budget)
    record.state = StudyState.FINISHED if finished else StudyState.INTERRUPTED
    record.save()
    result = TuneResult.from_record(record)
    parent = record.parent_run_id
    metrics = {f"tuner.trials_{k}": float(v) for k, v in counts.items()}
    metrics.update({f"tuner.{k}": float(v) for k, v in result.cost.items()})
    if result.best_metric is not None:
        metrics[f"tuner.best_{result.metric}"] = float(result.best_metric)
    if result.cost_to_best_usd is not None:
        metrics["tuner.cost_to_best_usd"] = float(result.cost_to_best_usd)
    settings = record.study_settings()
    if settings.budget_usd:  # the alerts log the thresholds they cross; the end, the figure
        spent = record.cost.get(BUDGET_FIGURES[settings.budget_scope], 0.0)
        metrics["tuner.budget_used_pct"] = 100.0 * spent / settings.budget_usd
    tracker.log_metrics(parent, metrics, step=0)
    tags = {"tuner.best_trial_id": result.best_trial_id or "",
            "tuner.cluster": _cluster_facts(record.meter),
            "tuner.prices": record.price_note,
            # a budget raised on resume: the stop reason goes, the cap is the new one (the
            # budget_usd param stays the first driver's: MLflow params cannot change)
            "tuner.stop_reason": record.stop_reason or ""}
    if settings.budget_usd:
        tags["tuner.budget_usd"] = f"{settings.budget_usd:g}"
    tags.update({f"tuner.best.{k}": v for k, v in (result.best_config or {}).items()})
    if not result.trials.empty and result.trials["cost_usd"].gt(0).any():
        from tuner.summary import plot_pareto

        with tempfile.TemporaryDirectory() as tmp:
            tracker.log_artifact(parent, plot_pareto(result, os.path.join(tmp, "pareto.png")))
    from tuner.summary import pareto_note
    from tuner.tracking import NOTE_TAG  # the run's description: the Pareto set, the chart link

    tags[NOTE_TAG] = pareto_note(result, tracker.urls(parent))
    why = result.why_no_best() if finished else None
    if why:  # finished without a best: FAILED, as the CLI's exit 1
        tags["tuner.no_best"] = why
    tracker.end_run(parent, "interrupted" if not finished else "failed" if why else "completed",
                    tags)
    flush_all()


def _cluster_facts(meter: Mapping[str, Any]) -> str:
    """E.g. ``2 x c5.xlarge spot us-east-1, 1 x m5.large on-demand us-east-1``."""
    kinds: dict[str, int] = {}
    for node in meter.get("nodes", {}).values():
        info = node["info"]
        key = f"{info['instance_type']} {info['market']} {info['region']}"
        kinds[key] = kinds.get(key, 0) + 1
    return ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items()))


def is_remote(storage_path: str) -> bool:
    """``s3://bucket/prefix`` and other URIs Ray Tune's pyarrow storage understands."""
    return "://" in storage_path


def _stem(source: str) -> str:
    stem = re.sub(r"\.ya?ml$", "", os.path.basename(source))
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem) or "study"


def _reference(fn: Callable[..., Any]) -> str | None:
    """``module:function`` when ``fn`` can be imported again by that name."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or not name.isidentifier():
        return None
    return f"{module}:{name}"
