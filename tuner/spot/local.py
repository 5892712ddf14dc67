"""A spot cluster on one machine: the embedded default for everything spot.

A head node and several worker nodes, real Ray node processes started with
``ray.cluster_utils.Cluster`` and owned by this process, labelled like the node types of
``cluster/aws-spot.yaml``. Each spot worker has its own metadata endpoint on 127.0.0.1
and a preemption watcher; a :class:`~tuner.spot.market.SpotMarket` issues notices at a
hazard rate on a compressed clock, shuts the node down when its notice expires (SIGTERM,
then SIGKILL a second later, as an instance's shutdown does) and starts a replacement of
the same type, as the autoscaler would. With an idle timeout it also scales down as the
autoscaler does with ``idle_timeout_minutes``: a worker none of whose resources has been
in use for that long is drained (a drain the node refuses once work lands on it) and
removed, and a removed kind comes back when resources are asked for that the live nodes
cannot give (:class:`IdleScaler` decides, on time passed in). It stops only the processes
it started, and removes the temp dir it made.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner import ray_compat
from tuner.cost.nodes import labels_for
from tuner.errors import StudyError
from tuner.ray_compat import RayCompatError
from tuner.spot.idle import IdleScaler, NodeView, capacity
from tuner.spot.imds import FakeMetadataServer, InstanceMetadata
from tuner.spot.market import SpotMarket
from tuner.spot.watcher import PreemptionWatcher, gcs_drain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerType:
    instance_type: str
    market: str  # spot | on-demand
    cpus: int = 1
    zone: str = "us-east-1a"


DEFAULT_WORKERS = (WorkerType("c5.xlarge", "spot", 1, "us-east-1a"),
                   WorkerType("m5.xlarge", "spot", 1, "us-east-1b"),
                   WorkerType("c5.xlarge", "on-demand", 1, "us-east-1a"))


_SCALE_EVERY_S = 0.5  # how often the idle scale-down asks the GCS for the cluster's status


@dataclass
class _Worker:
    kind: WorkerType
    node: Any
    imds: FakeMetadataServer | None
    watcher: PreemptionWatcher | None


class LocalSpotCluster:
    def __init__(self, workers: tuple[WorkerType, ...] = DEFAULT_WORKERS,
                 hazard_per_hour: float = 0.0, time_scale: float = 60.0,
                 notice_s: float = 120.0, margin_s: float = 15.0, head_cpus: int = 0,
                 dashboard: bool = False, seed: int = 0, region: str = "us-east-1",
                 act_on_notices: bool = True, idle_timeout_s: float | None = None) -> None:
        """``time_scale`` simulated seconds pass per real second (hazard and notice are
        in simulated time: the default 60 turns a 2-minute notice into 2 real seconds).
        ``act_on_notices=False`` runs no preemption watcher: nodes die without a drain,
        as on a cluster that ignores the notice. ``idle_timeout_s`` (real seconds, as the
        bill counts them; None: never) removes a worker idle that long and starts a
        removed kind again when resources are asked for that the live nodes lack."""
        self._kinds, self._scale, self._margin = workers, time_scale, margin_s
        self._head_cpus, self._dashboard, self._region = head_cpus, dashboard, region
        self._act = act_on_notices
        self.market = SpotMarket(hazard_per_hour, notice_s, seed)
        self.scaler = IdleScaler(idle_timeout_s, workers) if idle_timeout_s is not None else None
        self._noticed: set[str] = set()
        self._next_scale = 0.0
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._started = 0.0
        self._added = 0
        self.temp_dir = ""
        self.events: list[tuple[float, str, str]] = []  # (real time, event, node id)
        self.cluster: Any = None

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def dashboard_url(self) -> str | None:
        url = self.cluster.head_node.address_info.get("webui_url")
        return f"http://{url}" if url else None

    def start(self) -> LocalSpotCluster:
        from tuner.ray_compat import local_cluster_class, prepare_local_cluster

        prepare_local_cluster()
        Cluster = local_cluster_class()
        self.temp_dir = temp_dir = tempfile.mkdtemp(prefix="tuner-spot-", dir="/tmp")
        head = {"num_cpus": self._head_cpus, "include_dashboard": self._dashboard,
                "temp_dir": temp_dir, "gcs_server_port": free_port(),
                "dashboard_agent_listen_port": free_port(),
                "labels": labels_for("on-demand", "m5.large", self._region,
                                     launched_at=time.time())}
        if self._dashboard:
            head["dashboard_port"] = free_port()
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        ray_compat.write_cluster_address(self.cluster.address, temp_dir)
        for kind in self._kinds:
            self._add(kind)
        self.cluster.wait_for_nodes()
        if self.scaler is not None:  # so a study sees the kinds it may get back (node_shapes)
            ray_compat.report_node_groups(self.cluster.address, [
                (f"{kind.instance_type}-{kind.market}-{kind.zone}", count, {"CPU": kind.cpus})
                for kind, count in Counter(self._kinds).items()])
        self._started = time.time()
        return self

    def stop(self) -> None:
        with self._lock:
            for worker in self._workers.values():
                if worker.imds:
                    worker.imds.close()
            self._workers.clear()
        if self.cluster is not None:
            self.cluster.shutdown()
        if self.temp_dir:  # made by start(): the nodes' sockets, logs and unpacked jobs
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def spot_nodes(self) -> list[str]:
        with self._lock:
            return [n for n, w in self._workers.items() if w.kind.market == "spot"]

    def _add(self, kind: WorkerType) -> str:
        self._added += 1
        node = self.cluster.add_node(
            # each node unpacks runtime envs (a job's working_dir) in its own folder, as
            # separate machines would; sharing one, they delete each other's.
            runtime_env_dir_name=f"runtime_resources_node{self._added}",
            dashboard_agent_listen_port=free_port(),  # Ray's default is one fixed port
            num_cpus=kind.cpus, labels=labels_for(kind.market, kind.instance_type, self._region,
                                                  kind.zone, launched_at=time.time()))
        imds, watcher = None, None
        if kind.market == "spot":
            imds = FakeMetadataServer()
        if imds is not None and self._act:
            watcher = PreemptionWatcher(node.node_id, InstanceMetadata(imds.endpoint),
                                        gcs_drain(self.cluster.address),
                                        margin_s=self._margin / self._scale)
        with self._lock:
            self._workers[node.node_id] = _Worker(kind, node, imds, watcher)
        self.events.append((time.time(), "up", node.node_id))
        return node.node_id

    def _notice(self, node_id: str, at: float) -> None:
        with self._lock:
            worker = self._workers.get(node_id)
        if worker is None or worker.imds is None:
            return
        worker.imds.issue(at)
        self._noticed.add(node_id)
        self.events.append((time.time(), "notice", node_id))

    def run(self, stop: threading.Event, on_event: Callable[[str, str], None],
            interval_s: float = 0.25) -> None:
        """Run the market until ``stop`` is set: :meth:`tick` every ``interval_s``, each new
        event (``up``, ``notice``, ``killed``, ``removed``; node id) told to ``on_event``. Call it from
        the main thread (Ray starts nodes there only)."""
        told = 0
        while not stop.is_set():
            self.tick()
            # a node Ray starts installs its own SIGTERM handler: keep ours
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            for _, event, node in self.events[told:]:
                on_event(event, node)
            told = len(self.events)
            stop.wait(interval_s)

    def tick(self) -> None:
        """One step of the market: notices, drains, kills and replacements; then, with an
        idle timeout, idle workers removed and removed kinds started for waiting demand."""
        now = time.time()
        events = self.market.step(self.spot_nodes(), (now - self._started) * self._scale)
        for node_id, sim_when in events.notices.items():
            self._notice(node_id, self._started + sim_when / self._scale)
        with self._lock:
            watchers = [w.watcher for w in self._workers.values() if w.watcher]
        for watcher in watchers:
            watcher.poll()
        for node_id in events.kills:
            self._kill_and_replace(node_id)
        if self.scaler is not None and now >= self._next_scale:
            self._next_scale = now + _SCALE_EVERY_S
            self._scale_idle(self.scaler, time.time())

    def _scale_idle(self, scaler: IdleScaler, now: float) -> None:
        try:
            status, demand = ray_compat.cluster_status(self.cluster.address)
        except RayCompatError:
            raise
        except Exception as exc:  # the GCS is busy or restarting: try at the next tick
            log.warning("idle scale-down: no cluster status (%s)", exc)
            return
        nodes = {node_id: NodeView(idle, free) for node_id, (idle, free) in status.items()}
        with self._lock:
            workers = {n: w.kind for n, w in self._workers.items()}
        for node_id, kind in workers.items():  # not in the status yet: starting, all free
            nodes.setdefault(node_id, NodeView(None, capacity(kind)))
        events = scaler.step(now, workers, nodes, demand, keep=self._noticed)
        for node_id in events.remove:
            self._remove_idle(scaler, node_id, now)
        for kind in events.add:
            self._add(kind)

    def _remove_idle(self, scaler: IdleScaler, node_id: str, now: float) -> None:
        # The raylet refuses an idle drain once work has landed on the node: no trial can
        # start on a node between our look at it and its removal.
        accepted, why = ray_compat.idle_drain(self.cluster.address)(
            node_id, f"idle for {scaler.timeout_s:g} s (tuner cluster --idle-timeout)")
        if not accepted:
            log.info("idle scale-down: node %s is busy again (%s)", node_id[:8], why)
            scaler.busy(node_id, now)
            return
        with self._lock:
            worker = self._workers.pop(node_id, None)
        if worker is None:
            return
        self.cluster.remove_node(worker.node, allow_graceful=True)
        if worker.imds:
            worker.imds.close()
        self.events.append((time.time(), "removed", node_id))

    def _kill_and_replace(self, node_id: str) -> None:
        with self._lock:
            worker = self._workers.pop(node_id, None)
        if worker is None:
            return
        self._noticed.discard(node_id)
        # An interrupted spot instance shuts down: its processes get SIGTERM. A raylet that
        # gets it past its preemption drain's deadline tells the GCS it was preempted, so
        # Ray fails its actors' tasks as preempted at once (Tune retries the trial without
        # counting a failure); a SIGKILL left the GCS to find out from missed health
        # checks, and a trial's task could fail first as an ordinary actor error.
        self.cluster.remove_node(worker.node, allow_graceful=True)
        if worker.imds:
            worker.imds.close()
        self.events.append((time.time(), "killed", node_id))
        self._add(worker.kind)


_PORTS = random.SystemRandom()  # apart from any seed a user's code gives `random`


def free_port() -> int:
    """A port nothing listens on, for Ray to bind a moment later. Chosen below the kernel's
    ephemeral range: a port there (what ``bind(0)`` hands out) may be given to an outgoing
    connection in between, and the GCS then fails to start ("Address already in use")."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORTS.randrange(10000, low) if low > 11000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise StudyError(f"no free TCP port in 10000-{low} after 200 tries for the local cluster")


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (Linux; else 32768)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768

