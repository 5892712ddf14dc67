"""MLflow, at the edge: one parent run per study, one nested run per trial.

The only module that imports ``mlflow``. It speaks to a tracking store through
``MlflowClient`` (no global active run), so the driver can keep many trial runs
open at once and reattach to them after a restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from tuner.errors import StudyError
from tuner.mlflow_ui import (
    PARENT_TAG,
    VIEW_TAG,
    cost_view_state,
    cost_view_url,
    runs_url,
    view_key,
)

NOTE_TAG = "mlflow.note.content"  # a run's description (markdown) in the UI
# How the UI's kind selector records a training ("Machine learning") experiment. MLflow 3.17's
# UI decides the landing page from its workflow switch (the URL's workflowType, else the
# browser's last choice, else GenAI), not from this tag: every URL we print says
# workflowType=machine_learning, and the tag keeps the kind for UIs that read it.
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED",
           "stopped": "KILLED", "interrupted": "KILLED", "running": "RUNNING"}


class TrialRun(NamedTuple):
    """A trial's run as the store has it."""

    run_id: str
    running: bool  # still marked running
    metrics: Mapping[str, float]  # each metric it has: its value at its last step


_PAGE = 1000  # runs per search page
DEFAULT_URI = "sqlite:///mlflow.db"  # in the working directory (mlflow 3 refuses ./mlruns)


def default_uri() -> str:
    """:data:`DEFAULT_URI`, absolute."""
    return "sqlite:///" + os.path.abspath(DEFAULT_URI.removeprefix("sqlite:///"))


def masked(uri: str, text: str | None = None) -> str:
    """``text`` (default: ``uri`` itself) with the password in ``uri``, if it has one, shown
    as ``***``: for every message that names the store."""
    text = uri if text is None else text
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return text
    return text.replace(parts.netloc.rpartition("@")[0] + "@", f"{parts.username}:***@")


def sqlite_file(uri: str) -> str | None:
    """The database file a ``sqlite:///`` URI names (its ``?`` options dropped; relative to
    the working directory unless absolute, as sqlite reads it), or None for other stores."""
    return uri[len("sqlite:///"):].partition("?")[0] if uri.startswith("sqlite:///") else None


def _artifacts_beside(uri: str, experiment: str) -> str | None:
    """Where a new experiment of a sqlite store keeps its artifacts (the Pareto plot, the
    space): beside the database, in ``mlruns/<experiment>``, not in ``./mlruns`` of whatever
    directory the driver ran in. Other stores keep their own default (None)."""
    import re
    from pathlib import Path

    path = sqlite_file(uri)
    if path in (None, "", ":memory:"):
        return None
    db = Path(path).resolve()  # a relative path is from the working directory, as sqlite's
    return (db.parent / "mlruns" / re.sub(r"[^\w.-]", "_", experiment)).as_uri()


def probe(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a server is unreachable.

    Credentials in the URI (``http://user:pw@host``) go as basic auth: urllib takes none in
    the URL.
    """
    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(url.rstrip("/") + "/health")
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except urllib.error.HTTPError:
        pass  # it answered: reachable (a proxy may not serve /health)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StudyError(masked(uri, f"MLflow tracking store {uri!r} is not usable "
                                     f"(unreachable: {reason}); start the server or pass "
                                     f"another mlflow_uri (e.g. sqlite:///mlflow.db)")) from None


def study_urls(uri: str, parent_run_id: str) -> dict[str, str]:
    """The UI's links to a study (``runs``, and ``cost`` where its chart view was saved),
    read from the store; empty when it cannot be read (a stopped server, a moved file): what
    prints them goes on without."""
    try:
        probe(uri, timeout_s=2.0)
        client = _client(uri)
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        urls = {"runs": runs_url(uri, experiment_id)}
        if VIEW_TAG + view_key(parent_run_id) in client.get_experiment(experiment_id).tags:
            urls["cost"] = cost_view_url(uri, experiment_id, parent_run_id)
        return urls
    except Exception:  # unreachable, deleted run, another store: no links
        return {}


def _ms(epoch_s: float) -> int:
    """Epoch seconds as MLflow's epoch milliseconds."""
    return round(epoch_s * 1000)


def _line(exc: BaseException) -> str:
    """``Type: first line of its message`` (just ``Type`` when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {lines[0][:200]}" if lines else "")


_CLIENTS: dict[str, Any] = {}  # tracking URI -> MlflowClient (its store is slow to open)
_TRACKERS: weakref.WeakSet[Tracker] = weakref.WeakSet()


def flush_all() -> None:
    """Wait until every tracker's queued writes are in their stores: what ends a study.

    A tracker whose writes failed is reported once, then forgotten (a later study in this
    process does not report it again): the first such :class:`StudyError` is raised after
    every tracker was flushed or, while another exception is on its way out (``flush_all``
    in a ``finally``), printed, so that the error that stopped the study stays the one seen.
    """
    errors = []
    for tracker in list(_TRACKERS):
        try:
            tracker.flush()
        except StudyError as exc:
            errors.append(exc)
            _TRACKERS.discard(tracker)
    if errors and sys.exc_info()[1] is not None:
        print(f"[tuner] warning: {errors[0]}", file=sys.stderr, flush=True)
    elif errors:
        raise errors[0]


@contextlib.contextmanager
def _schema_lock(uri: str) -> Iterator[None]:
    """Serialise the first use of a sqlite store across processes: MLflow creates its
    tables then, and two studies starting together on a new file race (``table ...
    already exists``). An ``flock`` on the database file itself (sqlite locks with
    ``fcntl``, which does not see it); other stores need none."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if uri not in _CLIENTS:
        # "Creating initial MLflow database tables..." on a new store: not news to a user
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        # a tracking server's client prints two links as each run ends (14 lines for 6
        # trials, the experiment's opening MLflow's GenAI view); the study prints its own
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        with _schema_lock(uri):  # MLflow opens the store, creating its tables, here
            _CLIENTS[uri] = MlflowClient(tracking_uri=uri)
    return _CLIENTS[uri]


class Tracker:
    """Writes a study and its trials to an MLflow tracking store.

    The study's own run is written at once. Trial runs, and anything logged while the
    study runs, go through a queue that one background thread writes in order every
    ``batch_s`` seconds, a run's params, metrics and tags in one call: the driver's event
    loop never waits on the store. :meth:`flush` waits until the queue is written, for a
    bounded time, and raises if the store refused writes (the first failure is printed as
    it happens). A trial is named by its trial id; the thread creates its run and tells
    ``on_created`` the id.
    """

    def __init__(self, uri: str | None, experiment: str, batch_s: float = 0.5,
                 flush_timeout_s: float = 120.0) -> None:
        self.uri = uri or default_uri()
        probe(self.uri)
        self._runs: dict[str, str] = {}  # trial id -> its run id
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._wake = threading.Event()
        self._batch_s = batch_s
        self.flush_timeout_s = flush_timeout_s
        self._trials: set[str] = set()  # trial ids started or attached
        self._failed, self._first_failure = 0, ""  # store calls that failed; the first's error
        self._died: str | None = None  # why the writer thread stopped, if it did
        _TRACKERS.add(self)
        try:
            self._client = _client(self.uri)
            with _schema_lock(self.uri):  # two studies may share an experiment
                found = self._client.get_experiment_by_name(experiment)
                self.experiment_id = (found.experiment_id if found is not None else
                                      self._client.create_experiment(
                                          experiment, _artifacts_beside(self.uri, experiment),
                                          tags={EXPERIMENT_KIND_TAG: TRAINING_KIND}))
                if found is not None and EXPERIMENT_KIND_TAG not in found.tags:
                    self._client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG,
                                                    TRAINING_KIND)  # made before tuner set it
        except Exception as exc:  # unreachable server, bad URI, locked file, ...
            raise StudyError(self._hide(
                f"MLflow tracking store {self.uri!r} is not usable ({_line(exc)}); start the "
                f"server or pass another mlflow_uri (e.g. sqlite:///mlflow.db)")) from None

    # --- the study's run: written now ----------------------------------------------------

    def start_study(self, name: str, params: Mapping[str, Any], space: Mapping[str, Any]) -> str:
        run = self._client.create_run(self.experiment_id, run_name=name,
                                      tags={"tuner.kind": "study", "tuner.study": name})
        run_id = run.info.run_id
        self._log_batch(run_id, params=params)
        metric = str(params.get("metric", ""))
        if metric:  # the chart view, and a description linking to it until the study ends
            self.share_cost_view(run_id, name, metric, str(params.get("mode", "max")),
                                 int(params.get("num_samples", 0) or 0))
            urls = self.urls(run_id)
            self._client.set_tag(run_id, NOTE_TAG,
                                 f"**{name}**: [{metric} against cost]({urls['cost']}) · "
                                 f"[all runs]({urls['runs']})")
        self._client.log_dict(run_id, dict(space), "space.yaml")
        self._client.log_dict(run_id, {k: v if isinstance(v, (str, int, float, bool)) else str(v)
                                       for k, v in params.items()}, "config.yaml")
        return run_id

    def share_cost_view(self, parent_run_id: str, study: str, metric: str, mode: str,
                        trials: int) -> None:
        """Save the chart view of the study's trials, ``metric`` against ``tuner.cost_usd``,
        that :func:`cost_view_url` opens (an experiment tag, as the UI's Share button saves
        one; it also lists under the experiment's saved views)."""
        self._client.set_experiment_tag(self.experiment_id, VIEW_TAG + view_key(parent_run_id),
                                        cost_view_state(parent_run_id, study, metric, mode, trials))

    def urls(self, parent_run_id: str) -> dict[str, str]:
        """``runs``: the experiment's runs table; ``cost``: the study's cost chart."""
        return {"runs": runs_url(self.uri, self.experiment_id),
                "cost": cost_view_url(self.uri, self.experiment_id, parent_run_id)}

    def reopen_study(self, run_id: str) -> None:
        self._client.update_run(run_id, status="RUNNING")
        self._client.set_tag(run_id, "tuner.resumed", "true")

    def log_artifact(self, run_id: str, path: str) -> None:
        self._client.log_artifact(run_id, path)

    # --- queued: trials, and the study's run while trials write -----------------------------

    def start_trial(self, parent_run_id: str, study: str, trial_id: str,
                    params: Mapping[str, Any], run_id: str | None = None,
                    on_created: Callable[[str], None] | None = None,
                    again: bool = False, started: float | None = None) -> None:
        """Open the trial's nested run, or reattach to ``run_id`` after a restart.

        ``again``: the trial ran before this driver and its run id was not recorded; its
        run may exist (the driver died between creating it and saving the record).
        ``started``: when Tune started the trial (epoch seconds; default: now), the run's
        start time, though the writer creates the run later.
        """
        self._trials.add(trial_id)
        if run_id is not None:
            self._runs[trial_id] = run_id
            return
        self._put(("start", trial_id, parent_run_id, study, dict(params), on_created, again,
                   _ms(time.time() if started is None else started)))

    def trial_runs(self, parent_run_id: str) -> dict[str, TrialRun]:
        """Trial id -> the study's trial runs in the store, as a resumed study mends them."""
        found: dict[str, TrialRun] = {}
        token = None
        while True:  # every page: a run not found here would be made again
            runs = self._client.search_runs(
                [self.experiment_id], max_results=_PAGE, page_token=token,
                filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
            for r in runs:
                found[r.data.tags.get("tuner.trial_id", "")] = TrialRun(
                    r.info.run_id, r.info.status == "RUNNING", dict(r.data.metrics))
            token = runs.token
            if not token:
                return found

    def has_trial(self, trial_id: str) -> bool:
        return trial_id in self._trials

    def log_metrics(self, ref: str, metrics: Mapping[str, float], step: int) -> None:
        """``ref``: a trial id (of :meth:`start_trial`) or a run id."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._put(("metrics", ref, [Metric(k, float(v), now, step) for k, v in metrics.items()]))

    def set_tags(self, ref: str, tags: Mapping[str, Any]) -> None:
        self._put(("tags", ref, {k: str(v) for k, v in tags.items()}))

    def end_run(self, ref: str, status: str, tags: Mapping[str, Any] = {},
                ended: float | None = None) -> None:
        """Close a run; ``status`` is one of completed, pruned, failed, stopped, running.
        ``ended``: when it ended (epoch seconds; default: now), its end time in MLflow."""
        self.set_tags(ref, {"tuner.status": status, **tags})
        if status != "running":
            self._put(("end", ref, _STATUS[status], _ms(time.time() if ended is None else ended)))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything queued is in the store, at most ``timeout_s`` seconds
        (default ``flush_timeout_s``).

        Raises:
            StudyError: a write to the store failed (since this tracker was made), the
                writer thread stopped, or the store took longer than ``timeout_s``.
        """
        if self._writer is not None:
            timeout_s = self.flush_timeout_s if timeout_s is None else timeout_s
            deadline = time.monotonic() + timeout_s
            done = threading.Event()
            self._queue.put(("flush", done))
            self._wake.set()
            while not done.wait(0.05):
                if not self._writer.is_alive():
                    raise self._error(f"its writer thread stopped ({self._died}), so "
                                      f"{self._queue.qsize()} writes were not made")
                if time.monotonic() > deadline:
                    raise self._error(f"the store took more than {timeout_s:g} s to take the "
                                      f"queued writes ({self._queue.qsize()} still queued); "
                                      f"check that it is up and answering")
        if self._failed:
            raise self._error(f"{self._failed} writes failed (the first: {self._first_failure})"
                              f"; check the store")

    def _error(self, problem: str) -> StudyError:
        return StudyError(self._hide(f"MLflow tracking store {self.uri!r}: {problem}; the "
                                     f"study record keeps every result (tuner report <study "
                                     f"dir>)"))

    # --- the writer thread -------------------------------------------------------------

    def _put(self, op: tuple) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, daemon=True,
                                            name="tuner-mlflow-writer")
            self._writer.start()
        if self._died is None:  # else nothing would write it: flush() says so
            self._queue.put(op)

    def _write_forever(self) -> None:
        try:
            while True:
                ops = [self._queue.get()]
                if ops[0][0] != "flush":
                    self._wake.wait(self._batch_s)  # let a batch gather (a flush cuts it short)
                    self._wake.clear()
                while not self._queue.empty():
                    ops.append(self._queue.get())
                self._write(ops)
        except BaseException as exc:  # a bug, not the store: report it, never hang a flush
            self._died = _line(exc)
            print(self._hide(f"[tuner] warning: the MLflow writer for {self.uri} stopped "
                             f"({self._died}); the study record keeps every result"),
                  file=sys.stderr, flush=True)

    def _write(self, ops: list[tuple]) -> None:
        """Write one batch of queued operations in order, each run's params, metrics and
        tags gathered into one store call (before the run ends, or after the batch)."""
        pending: dict[str, dict[str, Any]] = {}  # run id -> params, metrics, tags to write

        def write(run_id: str | None = None) -> None:
            for rid in [run_id] if run_id else list(pending):
                if rid in pending:
                    try:
                        self._log_batch(rid, **pending.pop(rid))
                    except Exception as exc:  # the store refused or vanished
                        self._fail(exc)

        def gather(run_id: str) -> dict[str, Any]:
            return pending.setdefault(run_id, {"metrics": [], "params": {}, "tags": {}})

        for op in ops:
            kind = op[0]
            try:
                if kind == "flush":
                    write()
                    op[1].set()
                    continue
                run_id = self._runs.get(op[1], op[1])
                if kind == "start":
                    run_id, created = self._create_trial_run(*op[1:])
                    if created:
                        gather(run_id)["params"].update(op[4])
                elif kind == "metrics":
                    gather(run_id)["metrics"].extend(op[2])
                elif kind == "tags":
                    gather(run_id)["tags"].update(op[2])
                elif kind == "end":
                    write(run_id)
                    self._client.set_terminated(run_id, op[2], end_time=op[3])
            except Exception as exc:  # the store refused or vanished: say so once, go on
                self._fail(exc)
        write()

    def _create_trial_run(self, trial_id: str, parent_run_id: str, study: str,
                          params: dict[str, Any],
                          on_created: Callable[[str], None] | None,
                          again: bool, start_ms: int) -> tuple[str, bool]:
        """The trial's run id, and whether it was created now (not found from before)."""
        found = self._client.search_runs(
            [self.experiment_id], max_results=1,
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and "
                          f"tags.`tuner.trial_id` = '{trial_id}'") if again else []
        if found:  # created just before the driver died, before the record was saved
            run_id = found[0].info.run_id
        else:
            run = self._client.create_run(
                self.experiment_id, run_name=trial_id, start_time=start_ms,
                tags={PARENT_TAG: parent_run_id, "tuner.kind": "trial", "tuner.study": study,
                      "tuner.trial_id": trial_id})
            run_id = run.info.run_id
        self._runs[trial_id] = run_id
        if on_created is not None:
            on_created(run_id)
        return run_id, not found

    def _log_batch(self, run_id: str, metrics: Sequence[Any] = (), params: Mapping[str, Any] = {},
                   tags: Mapping[str, str] = {}) -> None:
        from mlflow.entities import Param, RunTag

        params_ = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        tags_ = [RunTag(str(k), str(v)) for k, v in tags.items()]
        chunks = max(-(-len(metrics) // 1000), -(-len(params_) // 100), -(-len(tags_) // 100))
        for i in range(chunks):  # MLflow's limits per batch: 1000 metrics, 100 params/tags
            self._client.log_batch(run_id, metrics=metrics[i * 1000:(i + 1) * 1000],
                                   params=params_[i * 100:(i + 1) * 100],
                                   tags=tags_[i * 100:(i + 1) * 100])

    def _fail(self, exc: Exception) -> None:
        """Count a failed store call; warn on the first (flush() raises them all)."""
        self._failed += 1
        if self._failed == 1:
            self._first_failure = _line(exc)
            print(self._hide(f"[tuner] warning: writing to MLflow at {self.uri} failed "
                             f"({self._first_failure}); the study goes on and its record keeps "
                             f"every result"), file=sys.stderr, flush=True)

    def _hide(self, text: str) -> str:
        return masked(self.uri, text)
