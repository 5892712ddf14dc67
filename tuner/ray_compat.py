"""Every private Ray API tuner relies on, behind one boundary.

Ray's public API does not cover all a spot study needs: the draining state of a node (a
spot notice), the GCS's drain call, the function-trainable mixin hook (how each result
learns its node), ASHA's and OptunaSearch's private fields, the test cluster of
``ray.cluster_utils``, the autoscaler's config validator, Tune's environment switches,
the GCS key-value store (how the studies sharing a cluster split its idle time), the
cluster's status, idle drains and node groups (the local cluster's idle scale-down), the
token-auth set-up that ``ray.init()`` does only for clusters it starts itself, the two
files of Tune's experiment snapshot that a resume reconciles, Tune's handling of a
reused actor that dies before the next trial starts on it, a resumed trial's list of
kept checkpoints, and the log line Tune writes
for a trial's lost task (a preemption it handles is no error to show), the address file a
job's supervisor reads and the runtime env it hands the job's driver.
Private APIs move between releases; a moved one must stop the product with a line
naming the Ray version it was built for, never let it run on silently (a study that no
longer checkpoints on a notice, or charges every trial $0).

Each accessor looks up what it needs at first use and raises :class:`RayCompatError`
when it is gone; :func:`check` runs every lookup at once (``tests/unit/test_ray_compat``
runs it against the installed Ray, so an upgrade breaks the build, not a user's bill).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from functools import cache
from typing import Any

from tuner.errors import StudyError, TunerError

BUILT_FOR = "2.60.0"  # the Ray of constraints.txt (a test checks they agree)


class RayCompatError(TunerError):
    """The installed Ray lacks a private API tuner relies on."""

    def __init__(self, what: str, detail: str) -> None:
        import ray

        super().__init__(
            f"Ray {ray.__version__} lacks {what} ({detail}); tuner was built for Ray "
            f"{BUILT_FOR}: install the pinned versions with "
            f"`pip install -c constraints.txt spot-tuner` (see README, 'Install')")


def _attr(module: str, name: str, what: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise RayCompatError(what, f"{module}.{name}: {exc}") from None


def _require(obj: Any, names: Iterable[str], what: str) -> None:
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        name = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise RayCompatError(what, f"{name} has no {', '.join(missing)}")


# --- spot notices: a node's draining state and the GCS drain call ---------------------------

@cache
def _draining_nodes() -> Callable[[], Iterable[str]]:
    state = _attr("ray._private.state", "state", "the draining state of nodes")
    _require(state, ["get_draining_nodes"], "the draining state of nodes")
    return state.get_draining_nodes  # type: ignore[no-any-return]


def draining_node_ids() -> set[str]:
    """Ids of the nodes being drained (a spot notice came for them)."""
    return set(_draining_nodes()())


def preemption_drain(gcs_address: str) -> Callable[[str, str, int], tuple[bool, str]]:
    """``drain(node_id, message, deadline_ms) -> (accepted, rejection)`` through the GCS,
    with reason PREEMPTION (Ray then does not count the trials' loss as failures)."""
    what = "the GCS drain-node call"
    client_class = _attr("ray._raylet", "GcsClient", what)
    reasons = _attr("ray.core.generated.autoscaler_pb2", "DrainNodeReason", what)
    reason = getattr(reasons, "DRAIN_NODE_REASON_PREEMPTION", None)
    if reason is None:
        raise RayCompatError(what, "DrainNodeReason has no DRAIN_NODE_REASON_PREEMPTION")
    # GcsClient hands its calls on to InnerGcsClient, which holds them
    _require(_attr("ray._raylet", "InnerGcsClient", what), ["drain_node"], what)
    client = client_class(address=gcs_address)

    def drain(node_id: str, message: str, deadline_ms: int) -> tuple[bool, str]:
        accepted, rejection = client.drain_node(node_id, reason, message, deadline_ms)
        return bool(accepted), str(rejection or "")

    return drain


# --- Ray Tune: the mixin hook, ASHA's and OptunaSearch's fields, env switches ---------------

def with_mixins(trainable: Callable[..., Any], *mixins: type) -> Callable[..., Any]:
    """``trainable`` with ``mixins`` added to the class Ray Tune wraps it in."""
    _check_mixin_hook()

    def trial(config: dict) -> Any:
        return trainable(config)

    trial.__name__ = getattr(trainable, "__name__", "trial")
    trial.__mixins__ = tuple(mixins)  # type: ignore[attr-defined]
    return trial


@cache
def _check_mixin_hook() -> None:
    wrap = _attr("ray.tune.trainable.function_trainable", "wrap_function",
                 "the function-trainable mixin hook")

    class Probe:
        pass

    def probe(config: dict) -> None:
        pass

    probe.__mixins__ = (Probe,)  # type: ignore[attr-defined]
    if not issubclass(wrap(probe), Probe):
        raise RayCompatError("the function-trainable mixin hook",
                             "wrap_function ignores __mixins__: results would carry no node, "
                             "and trials would be charged $0")


ASHA_FIELDS = ("_time_attr", "_max_t", "_metric")
OPTUNA_SEARCH_FIELDS = ("_ot_trials", "_ot_study", "_completed_trials", "_space",
                        "_suggest_from_define_by_run_func")


def require_fields(obj: Any, fields: Iterable[str]) -> None:
    """Check that a Ray object has the private fields we read (ASHA's, OptunaSearch's)."""
    _require(obj, fields, f"private fields of Ray's {_ray_base(type(obj)).__name__}")


def _ray_base(cls: type) -> type:
    return next((c for c in cls.__mro__ if c.__module__.startswith("ray.")), cls)


TUNE_ENV = ("TUNE_DISABLE_STRICT_METRIC_CHECKING", "TUNE_GLOBAL_CHECKPOINT_S",
            "TUNE_MAX_PENDING_TRIALS_PG")
AIR_ENV = ("RAY_AIR_NEW_OUTPUT",)


@cache
def check_env_switches() -> None:
    """The environment variables we set must be ones Ray still reads."""
    tune_vars = _attr("ray.tune.constants", "TUNE_ENV_VARS", "Tune's environment switches")
    air_vars = _attr("ray.air.constants", "AIR_ENV_VARS", "Tune's environment switches")
    gone = [v for v in TUNE_ENV if v not in tune_vars] + [v for v in AIR_ENV if v not in air_vars]
    if gone:
        raise RayCompatError("Tune's environment switches", f"no longer read: {', '.join(gone)}")


# --- local clusters: Ray's test cluster, token auth and temp dir ----------------------------

def local_cluster_class() -> type:
    """``ray.cluster_utils.Cluster``: real node processes owned by this process."""
    cls = _attr("ray.cluster_utils", "Cluster", "the local multi-node cluster")
    _require(cls, ["add_node", "remove_node", "wait_for_nodes", "shutdown", "address"],
             "the local multi-node cluster")
    return cls  # type: ignore[no-any-return]


def prepare_local_cluster() -> None:
    """Set up what Ray needs before this process starts cluster nodes itself, as
    ``ray.init()`` does for a new local cluster: token auth (unless ``RAY_AUTH_MODE``
    says otherwise), a token in ``~/.ray/auth_token`` when none exists, and Ray's temp
    dir (``ray.cluster_utils.Cluster`` writes the cluster's address there)."""
    what = "the token-auth set-up of new clusters"
    setup = "ray._private.authentication.authentication_token_setup"
    _attr(setup, "enable_token_auth_by_default", what)()
    _attr(setup, "ensure_token_if_auth_enabled", what)(None, create_token_if_missing=True)
    temp_dir = _attr("ray._common.utils", "get_default_ray_temp_dir", "Ray's temp dir")()
    os.makedirs(temp_dir, exist_ok=True)


def write_cluster_address(address: str, temp_dir: str) -> None:
    """Name ``address`` as the cluster of ``temp_dir``: a job's supervisor gives its driver
    the address in its own node's temp dir (``ray_current_cluster``) and, finding none there,
    any Ray instance running on the machine. ``ray.cluster_utils.Cluster`` writes it only
    in Ray's default temp dir."""
    _address_writer()(address, temp_dir)


def _address_writer() -> Callable[[str, str], None]:
    return _attr("ray._private.utils", "write_ray_address", "the cluster address file")


def job_working_dir() -> str | None:
    """The ``working_dir`` of the Ray job this process is the driver of (``ray job submit
    --working-dir``), if any: Ray runs such a driver in a copy it deletes with the session."""
    name = _attr("ray._private.runtime_env.constants", "RAY_JOB_CONFIG_JSON_ENV_VAR",
                 "the runtime env of a job's driver")
    try:
        runtime_env = json.loads(os.environ.get(name) or "{}").get("runtime_env") or {}
        return str(runtime_env["working_dir"]) if runtime_env.get("working_dir") else None
    except (ValueError, AttributeError):
        return None


def token_path() -> str:
    """Where Ray reads its token: ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(
        os.path.expanduser("~"), ".ray", "auth_token")


def has_token() -> bool:
    loader = _attr("ray._raylet", "AuthenticationTokenLoader", "Ray's token loader")
    return bool(loader.instance().has_token(ignore_auth_mode=True))


def use_token_if_available() -> None:
    """Before joining a cluster by address: use the token this machine has, as Ray does
    for a cluster it finds by itself (for an explicit address it does not)."""
    if "RAY_AUTH_MODE" not in os.environ and has_token():
        _attr(_TOKEN_SETUP, "_enable_token_auth",
              "Ray's token-auth switch")()


_TOKEN_SETUP = "ray._private.authentication.authentication_token_setup"


class _Dropped(logging.Filter):
    """Drops the records whose message (its format string) starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._prefix)


@contextlib.contextmanager
def lines_dropped(logger_name: str, prefix: str) -> Iterator[None]:
    """Within the block, logger ``logger_name`` drops its lines that start with ``prefix``
    (a Ray line that changes its words just shows again)."""
    logger, dropped = logging.getLogger(logger_name), _Dropped(prefix)
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


def token_notice_quiet() -> contextlib.AbstractContextManager[None]:
    """While tuner starts a local cluster: without Ray's WARNING that token authentication
    is on (Ray's default, which tuner keeps; cluster/README.md says so), alarming on a first
    run. Ray's warning that it is *off* still shows."""
    return lines_dropped(_TOKEN_SETUP, "Token authentication is enabled for this Ray")


def missing_token(address: str, maybe: bool = False) -> StudyError:
    """The one line for joining a token cluster without its token."""
    needs = ("did not answer; if it uses token authentication (Ray's default), it needs a "
             "token" if maybe else "requires an authentication token")
    return StudyError(
        f"the Ray cluster at {address} {needs} and this machine has none: copy it from the "
        f"head node (`ray get-auth-token` there) into {token_path()} (or set RAY_AUTH_TOKEN)")


# --- what nodes the cluster has, or its autoscaler may add -----------------------------------

def node_shapes() -> list[dict[str, float]]:
    """The total resources of each live node, and of each node type the cluster's
    autoscaler may add (from the cluster config it keeps in the GCS; none on a cluster
    without an autoscaler)."""
    import ray

    shapes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    what = "the autoscaler's cluster config"
    state = _attr("ray._private.state", "state", what)
    _require(state, ["get_cluster_config"], what)
    config = state.get_cluster_config()
    if config is not None:
        shapes += [dict(group.resources) for group in config.node_group_configs
                   if group.max_count != 0]
    return shapes


# --- what the studies sharing a cluster tell each other (the GCS's key-value store) ---------

_KV_NAMESPACE = "tuner"
_KV_WHAT = "the GCS key-value store"


def _kv(name: str) -> Callable[..., Any]:
    return _attr("ray.experimental.internal_kv", name, _KV_WHAT)


def cluster_kv_put(key: str, value: bytes) -> None:
    """Store ``value`` under ``key`` on the connected cluster (overwriting)."""
    _kv("_internal_kv_put")(key, value, overwrite=True, namespace=_KV_NAMESPACE)


def cluster_kv_items(prefix: str) -> dict[str, bytes]:
    """Every key under ``prefix`` on the connected cluster, with its value."""
    get = _kv("_internal_kv_get")
    items = {}
    for key in _kv("_internal_kv_list")(prefix, namespace=_KV_NAMESPACE):
        name = key.decode() if isinstance(key, bytes) else str(key)
        value = get(name, namespace=_KV_NAMESPACE)
        if value is not None:
            items[name] = value
    return items


# --- idle scale-down of the local cluster: the cluster's status, idle drains, node groups -----
# The cluster's status (``ray status``'s source: per-node use, Ray's idle clock, the resource
# requests waiting), the GCS's drain call with reason IDLE_TERMINATION (the autoscaler's: the
# raylet refuses it once the node is busy), and the node groups an autoscaler reports (what
# :func:`node_shapes` reads, so a study on a scaled-down cluster knows which nodes may come
# back).

_STATUS, _IDLE_DRAIN, _GROUPS = ("the cluster status", "the GCS idle drain call",
                                 "the autoscaler's cluster config report")


def cluster_status(gcs_address: str) -> tuple[dict[str, tuple[float | None, dict[str, float]]],
                                               list[dict[str, float]]]:
    """(each live node: (seconds Ray has seen it idle, None unless its status is IDLE, so a
    draining node is never idle; its free resources), the resource bundles waiting: those of
    pending placement groups (a Tune trial's) and of tasks and actors; not the
    ``request_resources`` constraints, which ask for a cluster size, not for free room)."""
    status = _attr("ray.autoscaler.v2.sdk", "get_cluster_status", _STATUS)(gcs_address)
    try:
        nodes = {}
        for node in [*status.active_nodes, *status.idle_nodes]:
            usage = node.resource_usage
            if node.node_id is None or usage is None:
                continue
            idle = usage.idle_time_ms / 1000.0 if node.node_status == "IDLE" else None
            nodes[node.node_id] = (idle, {u.resource_name: u.total - u.used for u in usage.usage})
        demands = status.resource_demands
        waiting = [dict(by_count.bundle)
                   for demand in [*demands.placement_group_demand, *demands.ray_task_actor_demand]
                   for by_count in demand.bundles_by_count for _ in range(by_count.count)]
    except AttributeError as exc:
        raise RayCompatError(_STATUS, f"ClusterStatus: {exc}") from None
    return nodes, waiting


def idle_drain(gcs_address: str) -> Callable[[str, str], tuple[bool, str]]:
    """``drain(node_id, message) -> (accepted, rejection)`` with reason IDLE_TERMINATION."""
    reasons = _attr("ray.core.generated.autoscaler_pb2", "DrainNodeReason", _IDLE_DRAIN)
    _require(reasons, ["DRAIN_NODE_REASON_IDLE_TERMINATION"], _IDLE_DRAIN)
    reason = reasons.DRAIN_NODE_REASON_IDLE_TERMINATION
    client = _attr("ray._raylet", "GcsClient", _IDLE_DRAIN)(address=gcs_address)

    def drain(node_id: str, message: str) -> tuple[bool, str]:
        accepted, rejection = client.drain_node(node_id, reason, message, 0)
        return bool(accepted), str(rejection or "")

    return drain


def report_node_groups(gcs_address: str, groups: Iterable[tuple[str, int, dict[str, int]]]) -> None:
    """Tell the GCS the node groups this cluster may start -- (name, at most how many,
    resources of one) each, from 0 -- as an autoscaler reports its cluster config."""
    config = _attr("ray.core.generated.autoscaler_pb2", "ClusterConfig", _GROUPS)()
    for name, count, resources in groups:
        group = config.node_group_configs.add()
        group.name, group.min_count, group.max_count = name, 0, count
        for key, amount in resources.items():
            group.resources[key] = amount  # whole units in this message
    client = _attr("ray._raylet", "GcsClient", _GROUPS)(address=gcs_address)
    client.report_cluster_config(config.SerializeToString())


# --- the cluster launcher's config validator -------------------------------------------------

def cluster_config_validator() -> tuple[Callable[[dict], dict], Callable[[dict], None]]:
    """Ray's own ``prepare_config`` and ``validate_config`` for cluster launcher YAMLs."""
    what = "the cluster launcher's config validator"
    module = "ray.autoscaler._private.util"
    return _attr(module, "prepare_config", what), _attr(module, "validate_config", what)


# --- a resumed experiment: Tune's trial list and its search generator's count ----------------

_SNAPSHOT = "Tune's experiment snapshot (trial list and search generator state)"


def reconcile_trial_count(tune_path: str, started: Collection[str] | None = None) -> int:
    """Tune saves its trial list (``experiment_state-*.json``) and its search generator's
    count of created trials (``search_gen_state-*.json``) as two files, uploaded separately
    to remote storage. A driver killed between the two can leave a count newer than the
    list: on resume Tune believes it created trials the list lacks, never creates them,
    and the study can never reach ``num_samples``. Sets the newest count back to the newest
    list's length (newest by name, as Tune picks them); returns by how much it lowered it
    (0: they agreed).

    ``started``: the study was stopped by its budget, which was raised; these are the trials
    it started. Tune marks its search generator finished when a stopper ends the
    experiment (it would restore it finished and create no trial), and the trials it had
    created but not started count against ``num_samples``: the generator is set unfinished
    and its count set to the trials of the list that started (the list keeps every trial
    of every driver, those discounted by an earlier raise too)."""
    import fnmatch
    import json

    import pyarrow.fs
    import ray.cloudpickle as cloudpickle

    get_fs_and_path = _attr("ray.train._internal.storage", "get_fs_and_path", _SNAPSHOT)
    lists = _attr("ray.tune.execution.tune_controller", "TuneController", _SNAPSHOT)
    counts = _attr("ray.tune.search.search_generator", "SearchGenerator", _SNAPSHOT)
    fs, path = get_fs_and_path(tune_path)
    names = [info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(path))]
    list_files = fnmatch.filter(names, lists.CKPT_FILE_TMPL.format("*"))
    count_files = fnmatch.filter(names, counts.CKPT_FILE_TMPL.format("*"))
    if not list_files or not count_files:
        return 0
    list_path, count_path = f"{path}/{max(list_files)}", f"{path}/{max(count_files)}"
    with fs.open_input_stream(list_path) as f:
        saved = json.loads(f.readall())
    if not isinstance(saved, dict) or not isinstance(saved.get("trial_data"), list):
        raise RayCompatError(_SNAPSHOT, f"{list_path} has no trial_data list")
    trials = len(saved["trial_data"])
    with fs.open_input_stream(count_path) as f:
        count = cloudpickle.loads(f.readall())
    over = max(0, int(count["counter"]) - trials)
    unstarted = 0 if started is None else sum(
        1 for t in saved["trial_data"] if _snapshot_trial_id(t, list_path) not in started)
    if not over and not unstarted and not (started is not None and count["finished"]):
        return 0
    count["counter"] = min(int(count["counter"]), trials) if started is None else trials - unstarted
    count["finished"] = False
    with fs.open_output_stream(count_path) as f:
        f.write(cloudpickle.dumps(count))
    return over


def _snapshot_trial_id(entry: Any, where: str) -> str:
    """A trial's id in Tune's trial list: [its JSON state, its run metadata] per trial."""
    import json

    try:
        return str(json.loads(entry[0])["trial_id"])
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise RayCompatError(_SNAPSHOT, f"{where}: a trial_data entry without a trial_id "
                                        f"({type(exc).__name__})") from exc


# --- actor reuse: an actor that dies while it is handed to the next trial -------------------

_REUSE = "Tune's actor reuse (TuneController's reset task)"


def _tune_controller() -> Any:
    cls = _attr("ray.tune.execution.tune_controller", "TuneController", _REUSE)
    _require(cls, ["_schedule_trial_task", "_schedule_trial_reset", "_actor_failed"], _REUSE)
    return cls


def count_a_dead_reused_actor_once() -> None:
    """With ``reuse_actors``, Tune hands a finished trial's actor to the next trial through
    a ``reset`` task. If the actor has died (its spot node is gone), Ray 2.60 handles the
    death twice for that trial: the actor's error handler retries it (requeued, actor
    dropped), then the reset task's error handler, called right after for the same
    exception, finds the trial PENDING and ends it ERROR whatever ``max_failures`` says,
    leaving it among the trials being reset. Patched (idempotent): a reset's error for a
    trial that has already left that actor only clears that mark; anything else is Tune's
    own handling."""
    cls = _tune_controller()
    if getattr(cls, "_tuner_reset_once", False):
        return
    schedule = cls._schedule_trial_task

    def _schedule_trial_task(self: Any, trial: Any, method_name: str, *args: Any,
                             on_error: Callable[[Any, Exception], None] | None = None,
                             **kwargs: Any) -> Any:
        if method_name == "reset" and on_error is not None:
            actor, tune_handles = self._trial_to_actor.get(trial), on_error

            def on_error(trial: Any, exception: Exception) -> None:
                if actor is not None and self._trial_to_actor.get(trial) is not actor:
                    self._resetting_trials.discard(trial)  # retried by the actor's handler
                    return
                tune_handles(trial, exception)
        return schedule(self, trial, method_name, *args, on_error=on_error, **kwargs)

    cls._schedule_trial_task = _schedule_trial_task
    cls._tuner_reset_once = True


# --- a resumed trial's kept checkpoints: ones the killed driver deleted ----------------------

_KEPT = "Tune's per-trial list of kept checkpoints (_CheckpointManager._checkpoint_results)"


def _kept_checkpoints(manager: Any) -> list[Any]:
    _require(manager, ["_checkpoint_results"], _KEPT)
    return manager._checkpoint_results


def forget_deleted_checkpoints(trial: Any) -> list[str]:
    """Tune deletes a trial's checkpoint as soon as it registers the one that takes it past
    ``num_to_keep``, but snapshots the experiment only every few seconds: a driver killed in
    between leaves a snapshot whose kept checkpoints include deleted ones. The resumed
    driver deletes them again when the trial registers its next checkpoints, and Ray 2.60
    raises FileNotFoundError for a missing path (``_delete_fs_path`` looks it up before its
    ``try``): Tune logs "Error handling checkpoint" with the traceback and skips the rest of
    that checkpoint's bookkeeping (the trial's checkpoint index then lags the checkpoints it
    writes). Drops the kept checkpoints that are gone from ``trial``'s bookkeeping and
    returns their paths."""
    import pyarrow.fs

    manager = trial.run_metadata.checkpoint_manager
    kept = _kept_checkpoints(manager)

    def gone(result: Any) -> bool:
        try:
            return bool(result.checkpoint.filesystem.get_file_info(result.checkpoint.path).type
                        == pyarrow.fs.FileType.NotFound)
        except OSError:  # storage unreachable: keep it, as Tune would
            return False

    missing = [r for r in kept if gone(r)]
    if missing:
        manager._checkpoint_results = [r for r in kept if r not in missing]
    return [r.checkpoint.path for r in missing]


# --- a trial lost to a preempted node: Tune's error line for it ------------------------------

_TRIAL_ERROR_LOG = "Tune's log line for a trial task that failed"
_TRIAL_ERROR_LOGGER = "ray.tune.execution.tune_controller"
_TRIAL_ERROR_PREFIX = "Trial task failed"


def is_preemption(exception: BaseException | None) -> bool:
    """Whether Tune takes ``exception`` (a trial's failed task) for a preemption, which it
    retries without counting a failure: an actor error Ray marks preempted (its node was
    drained for preemption and went after the drain's deadline), unless
    ``RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE`` says to count those too."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exception, RayTaskError):
        exception = exception.as_instanceof_cause()
    counted = _attr("ray.train.constants", "RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE",
                    _TRIAL_ERROR_LOG)
    return (isinstance(exception, RayActorError) and exception.preempted
            and not int(os.environ.get(counted, "0") or 0))


def user_traceback(exception: BaseException | None) -> str | None:
    """A failed trial task's traceback as Python prints it, without Ray's frames or
    tuner's: the trainable's (and the libraries' it called), then the error. None when
    ``exception`` carries no remote traceback or it has no such frame."""
    import ray
    from ray.exceptions import RayTaskError

    import tuner

    if not isinstance(exception, RayTaskError):
        return None
    text = str(exception)  # Ray's: its task's title, then the traceback (some frames hidden)
    hidden = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (ray, tuner))
    frames: list[str] = []
    error: list[str] = []
    keep = False
    for line in text.rstrip().splitlines():
        stripped = line.strip()
        if not stripped or not set(stripped) - set("^~ "):  # blank, or a caret marker
            continue
        if stripped.startswith('File "') and line.startswith(" "):  # a frame's header
            path = stripped[len('File "'):].split('"', 1)[0]
            keep, error = not path.startswith(hidden), []
            if keep:
                frames.append(line)
        elif line.startswith(" "):  # the frame's source line
            if keep:
                frames.append(line)
        elif not line.startswith(("Traceback ", "During handling", "The above exception")):
            error.append(line)  # the error, after the last frame
    if not frames or not error:
        return None
    return "\n".join([*frames, *error])


def trial_error_log() -> tuple[str, str]:
    """(logger name, message prefix) of the ERROR line, with the traceback, that Tune
    writes for every failed trial task, a preempted one included."""
    import inspect

    controller = _tune_controller()
    _require(controller, ["_trial_task_failure"], _TRIAL_ERROR_LOG)
    source = inspect.getsource(controller._trial_task_failure)
    module = importlib.import_module(_TRIAL_ERROR_LOGGER)
    if f'"{_TRIAL_ERROR_PREFIX} ' not in source or \
            getattr(getattr(module, "logger", None), "name", None) != _TRIAL_ERROR_LOGGER:
        raise RayCompatError(_TRIAL_ERROR_LOG, f"TuneController._trial_task_failure no longer "
                             f"logs {_TRIAL_ERROR_PREFIX!r} to {_TRIAL_ERROR_LOGGER}")
    return _TRIAL_ERROR_LOGGER, _TRIAL_ERROR_PREFIX


def check() -> None:
    """Look up every private API above (what a test runs against the installed Ray)."""
    _draining_nodes.cache_clear()
    _check_mixin_hook.cache_clear()
    check_env_switches.cache_clear()
    _draining_nodes()
    _require(_attr("ray._private.state", "state", "the autoscaler's cluster config"),
             ["get_cluster_config"], "the autoscaler's cluster config")
    _check_mixin_hook()
    check_env_switches()
    local_cluster_class()
    _address_writer()
    job_working_dir()
    cluster_config_validator()
    for name in ("_internal_kv_put", "_internal_kv_get", "_internal_kv_list"):
        _kv(name)
    _attr("ray.autoscaler.v2.sdk", "get_cluster_status", _STATUS)
    _require(_attr("ray.core.generated.autoscaler_pb2", "DrainNodeReason", _IDLE_DRAIN),
             ["DRAIN_NODE_REASON_IDLE_TERMINATION"], _IDLE_DRAIN)
    _attr("ray._raylet", "GcsClient", _GROUPS)  # it hands calls to InnerGcsClient:
    _require(_attr("ray._raylet", "InnerGcsClient", _GROUPS), ["drain_node", "report_cluster_config"], _GROUPS)
    _attr("ray.core.generated.autoscaler_pb2", "ClusterConfig", _GROUPS)
    _require(_attr("ray._raylet", "InnerGcsClient", "the GCS drain-node call"), ["drain_node"],
             "the GCS drain-node call")
    _attr("ray.core.generated.autoscaler_pb2", "DrainNodeReason", "the GCS drain-node call")
    _attr("ray._raylet", "AuthenticationTokenLoader", "Ray's token loader")
    _attr("ray.train._internal.storage", "get_fs_and_path", _SNAPSHOT)
    _tune_controller()
    _kept_checkpoints(_attr("ray.train._internal.checkpoint_manager", "_CheckpointManager",
                            _KEPT)(None))
    trial_error_log()
    is_preemption(None)
    for module, name in (("ray.tune.execution.tune_controller", "TuneController"),
                         ("ray.tune.search.search_generator", "SearchGenerator")):
        _require(_attr(module, name, _SNAPSHOT), ["CKPT_FILE_TMPL"], _SNAPSHOT)
    from ray.tune.schedulers import AsyncHyperBandScheduler
    from ray.tune.search.optuna import OptunaSearch

    require_fields(AsyncHyperBandScheduler(time_attr="training_iteration", max_t=2),
                   ASHA_FIELDS)
    require_fields(OptunaSearch(space=lambda trial: None, metric="m", mode="max"),
                   OPTUNA_SEARCH_FIELDS)
