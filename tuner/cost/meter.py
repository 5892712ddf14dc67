"""The cost meter: dollars from node-seconds, with waste and idle time accounted.

Pure bookkeeping with time passed in (seconds on any one clock), so simulations and
tests run it without sleeping. For each reported iteration a trial is charged::

    seconds x node $/hour / 3600 x share      (share = trial GPUs / node GPUs, else CPUs)

An iteration charged a second time (a restart from an older checkpoint re-ran it)
moves its first charge to *wasted*. A node's uptime not covered by any trial is *idle*,
computed from the busy intervals, so ``useful + wasted + idle == cluster`` is a check
on the measurements, not an identity by construction. A node's uptime counts while a
driver of the study watches it: the time between a driver's end and `tuner resume` is not
the study's (:meth:`CostMeter.stop_watching`).

Studies sharing a cluster: each publishes its busy profile per node (:meth:`published`)
and reads the others' (:attr:`CostMeter.peers`). A node's idle time -- the head's, and a
worker's when no study's trial holds it -- is split evenly between the studies running
at that moment, so each study's cluster figure is its own trials' node-seconds plus its
share of the idle, and the studies' figures add up to the cluster's bill.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from tuner.cost.catalog import Market


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    instance_type: str
    region: str
    market: Market
    usd_per_hour: float
    cpus: float
    gpus: float = 0.0
    on_demand_usd_per_hour: float = 0.0  # what the same node costs on demand
    zone: str | None = None
    labelled: bool = True  # False: priced by the study's default instance type


@dataclass
class TrialCost:
    cost_usd: float = 0.0  # everything it was charged, waste included
    wasted_usd: float = 0.0
    on_demand_usd: float = 0.0  # the same node-seconds at on-demand prices
    iterations: dict[int, float] = field(default_factory=dict)  # latest charge per iteration
    markets: set[str] = field(default_factory=set)
    instance_types: set[str] = field(default_factory=set)
    lost_iterations: int = 0  # iterations run again after a restart


@dataclass
class _Node:
    info: NodeInfo
    up: float
    down: float | None = None
    busy: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, share)
    earlier: list[tuple[float, float]] = field(default_factory=list)  # uptime of earlier drivers

    def windows(self, now: float) -> list[tuple[float, float]]:
        """The node's uptime while a driver of the study watched it, up to ``now``."""
        return [*self.earlier, (self.up, self.down if self.down is not None else now)]


@dataclass(frozen=True)
class Peer:
    """Another study on the same cluster, as it last published itself (:meth:`CostMeter.published`).

    It ran from ``since`` to ``until`` (its last word); ``busy`` is its busy level per node,
    as (start, end, share) segments; ``running`` the level its running trials held per node
    at ``until``, which a study still running (``ended`` false) is taken to hold since.
    """

    since: float
    until: float
    busy: dict[str, list[tuple[float, float, float]]]
    running: dict[str, float] = field(default_factory=dict)
    ended: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Peer:
        return cls(float(data["since"]), float(data["until"]),
                   {n: [tuple(map(float, seg)) for seg in segs] for n, segs in data["busy"].items()},  # type: ignore[misc]
                   {n: float(v) for n, v in data.get("running", {}).items()}, bool(data.get("ended")))

    def as_of(self, now: float, stale_s: float) -> Peer:
        """Extended to ``now`` when it is still running and spoke within ``stale_s``: its
        running trials are taken to run on (the best guess until it speaks again)."""
        if self.ended or now <= self.until or now - self.until > stale_s:
            return self
        busy = {n: list(segs) for n, segs in self.busy.items()}
        for node_id, level in self.running.items():
            busy.setdefault(node_id, []).append((self.until, now, level))
        return Peer(self.since, now, busy, self.running, self.ended)


class CostMeter:
    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self.trials: dict[str, TrialCost] = {}
        # trial -> (node, share, end) of its last charge: it holds that node from then on
        self._running: dict[str, tuple[str, float, float]] = {}
        self.peers: list[Peer] = []  # the other studies on this cluster (not saved: re-read)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the study record (JSON), restored by :meth:`from_dict`."""
        return {
            "nodes": {k: {"info": {**asdict(n.info), "market": n.info.market.value},
                          "up": n.up, "down": n.down, "busy": n.busy, "earlier": n.earlier}
                      for k, n in self._nodes.items()},
            "trials": {k: {**asdict(t), "iterations": {str(i): v for i, v in t.iterations.items()},
                           "markets": sorted(t.markets), "instance_types": sorted(t.instance_types)}
                       for k, t in self.trials.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostMeter:
        meter = cls()
        for k, n in data.get("nodes", {}).items():
            info = NodeInfo(**{**n["info"], "market": Market(n["info"]["market"])})
            meter._nodes[k] = _Node(info, n["up"], n["down"], [tuple(b) for b in n["busy"]],
                                    [tuple(w) for w in n.get("earlier", ())])
        for k, t in data.get("trials", {}).items():
            meter.trials[k] = TrialCost(
                t["cost_usd"], t["wasted_usd"], t["on_demand_usd"],
                {int(i): v for i, v in t["iterations"].items()}, set(t["markets"]),
                set(t["instance_types"]), t.get("lost_iterations", 0))
        return meter

    @property
    def live_nodes(self) -> list[str]:
        return [k for k, n in self._nodes.items() if n.down is None]

    def node_up(self, node: NodeInfo, at: float) -> None:
        """The node is up from ``at``: new, or seen again by a driver that resumed the study
        (a persistent cluster's node outlives the driver that stopped watching it)."""
        known = self._nodes.get(node.node_id)
        if known is None:
            self._nodes[node.node_id] = _Node(node, at)
        elif known.down is not None and at >= known.down:
            known.earlier.append((known.up, known.down))
            known.up, known.down = at, None

    def node_down(self, node_id: str, at: float) -> None:
        node = self._nodes.get(node_id)
        if node is not None and node.down is None:
            node.down = at

    def stop_watching(self, at: float) -> None:
        """The study's driver stops: no node counts after ``at`` until a driver that resumes
        the study sees it again (:meth:`node_up`). The time between drivers is not the
        study's: its local cluster is gone, and a cloud cluster may run other work."""
        for node_id in self.live_nodes:
            self.node_down(node_id, at)

    def node(self, node_id: str) -> NodeInfo | None:
        node = self._nodes.get(node_id)
        return node.info if node else None

    def charge(self, trial_id: str, node_id: str, iteration: int, seconds: float, end: float,
               cpus: float = 1.0, gpus: float = 0.0) -> float:
        """Charge one iteration that ran ``seconds`` up to time ``end``; returns its $."""
        node = self._nodes[node_id]
        info = node.info
        share = gpus / info.gpus if gpus and info.gpus else (cpus / info.cpus if info.cpus else 1.0)
        share = min(share, 1.0)
        usd = max(seconds, 0.0) * info.usd_per_hour / 3600.0 * share
        trial = self.trials.setdefault(trial_id, TrialCost())
        if iteration in trial.iterations:  # re-run after a restart: the first run was lost
            trial.wasted_usd += trial.iterations[iteration]
            trial.lost_iterations += 1
        trial.iterations[iteration] = usd
        trial.cost_usd += usd
        trial.on_demand_usd += usd * (info.on_demand_usd_per_hour or info.usd_per_hour) / \
            info.usd_per_hour if info.usd_per_hour else 0.0
        trial.markets.add(info.market.value)
        trial.instance_types.add(info.instance_type)
        node.busy.append((end - seconds, end, share))
        self._running[trial_id] = (node_id, share, end)
        return usd

    def trial_ended(self, trial_id: str) -> None:
        """The trial holds no node any more (for what :meth:`published` says is running)."""
        self._running.pop(trial_id, None)

    def holds_node(self, trial_id: str) -> bool:
        return trial_id in self._running

    def published(self, since: float, now: float, ended: bool = False,
                  resolution_s: float = 0.01) -> dict[str, Any]:
        """What other studies on the cluster need to split its idle time with this one
        (:class:`Peer`'s fields): this study's busy level per node as merged segments,
        edges rounded to ``resolution_s`` so back-to-back iterations merge into one. A
        running trial is busy from its last charge to ``now`` (the iteration it is in)."""
        in_progress: dict[str, list[tuple[float, float, float]]] = {}
        if not ended:
            for node_id, share, end in self._running.values():
                in_progress.setdefault(node_id, []).append((end, max(end, now), share))
        busy: dict[str, list[list[float]]] = {}
        for node_id, node in self._nodes.items():
            rounded = [(round(a / resolution_s) * resolution_s, round(b / resolution_s) * resolution_s, share)
                       for a, b, share in [*node.busy, *in_progress.get(node_id, ())]]
            segments: list[list[float]] = []
            for start, end, level in _levels(rounded):
                if level <= 0:
                    continue
                if segments and segments[-1][1] == start and segments[-1][2] == level:
                    segments[-1][1] = end
                else:
                    segments.append([start, end, level])
            if segments:
                busy[node_id] = segments
        running: dict[str, float] = {}
        if not ended:
            for node_id, share, _ in self._running.values():
                running[node_id] = running.get(node_id, 0.0) + share
        return {"schema": 1, "since": since, "until": now, "ended": ended, "busy": busy,
                "running": running}

    def totals(self, now: float) -> dict[str, float]:
        """Study totals in $, two headlines and their parts:

        * the trials: ``cost_usd`` (all charged, waste included), ``wasted_usd``,
          ``useful_usd``, and ``on_demand_equiv_usd`` (the same node-seconds on demand);
        * the cluster while the study ran (what the bill says): ``cluster_usd`` (every
          node's uptime, head and idle included), ``idle_usd``, and
          ``cluster_on_demand_usd`` (the same nodes for the same time on demand); on a
          cluster shared with ``shared_with_studies`` other studies, this study's share.
        """
        cost = sum(t.cost_usd for t in self.trials.values())
        wasted = sum(t.wasted_usd for t in self.trials.values())
        cluster, idle, cluster_on_demand = self._bill(now)
        on_demand = sum(t.on_demand_usd for t in self.trials.values())
        return {"cost_usd": cost, "wasted_usd": wasted, "useful_usd": cost - wasted,
                "on_demand_equiv_usd": on_demand, "savings_pct": _saved(cost, on_demand),
                "idle_usd": idle, "cluster_usd": cluster,
                "cluster_on_demand_usd": cluster_on_demand,
                "cluster_savings_pct": _saved(cluster, cluster_on_demand),
                "shared_with_studies": float(len(self.peers))}

    def cluster_usd(self, now: float, on_demand: bool = False) -> float:
        """Every node's uptime up to ``now`` at its price (or its on-demand price): the bill
        so far, cheap enough to ask at every step (alone on the cluster: no idle sweep)."""
        cluster, _, cluster_on_demand = self._bill(now, with_idle=False)
        return cluster_on_demand if on_demand else cluster

    def cluster_usd_per_second(self) -> float:
        """What the live nodes cost per second now (this study's share of it at most)."""
        return sum(n.info.usd_per_hour for n in self._nodes.values() if n.down is None) / 3600

    def idle_by_kind(self, now: float) -> dict[str, tuple[float, float]]:
        """Per node kind (``"c5.xlarge spot"``): (idle $, idle share of that kind's $)."""
        kinds: dict[str, list[float]] = {}
        for node, seconds, idle_seconds in self._node_seconds(now):
            rate = node.info.usd_per_hour / 3600.0
            kind = kinds.setdefault(f"{node.info.instance_type} {node.info.market.value}",
                                    [0.0, 0.0])
            kind[0] += idle_seconds * rate
            kind[1] += seconds * rate
        return {k: (idle, idle / cluster if cluster else 0.0)
                for k, (idle, cluster) in sorted(kinds.items())}

    def node_bill(self, now: float, node_ids: set[str] | None = None) -> tuple[float, float]:
        """(cluster $, idle $) of the given nodes (default: all) up to ``now``."""
        cluster, idle, _ = self._bill(now, node_ids)
        return cluster, idle

    def _bill(self, now: float, node_ids: set[str] | None = None,
              with_idle: bool = True) -> tuple[float, float, float]:
        """(cluster $, idle $, cluster $ at on-demand prices) of the given nodes, one pass."""
        cluster = idle = on_demand = 0.0
        for node, seconds, idle_seconds in self._node_seconds(now, node_ids, with_idle):
            info = node.info
            cluster += seconds * info.usd_per_hour / 3600.0
            idle += idle_seconds * info.usd_per_hour / 3600.0
            on_demand += seconds * (info.on_demand_usd_per_hour or info.usd_per_hour) / 3600.0
        return cluster, idle, on_demand

    def _node_seconds(self, now: float, node_ids: set[str] | None = None,
                      with_idle: bool = True) -> Iterator[tuple[_Node, float, float]]:
        """Per node (default: all), up to ``now`` or its end: (node, this study's node-seconds,
        of them idle). Its whole uptime when the study has the cluster to itself (idle only
        ``with_idle``), else its trials' busy node-seconds plus its share of the node's idle,
        split between the studies running."""
        peers = [p.as_of(now, _STALE_S) for p in self.peers]
        windows = [(p.since, p.until) for p in peers]
        for node_id, node in self._nodes.items():
            if node_ids is not None and node_id not in node_ids:
                continue
            seconds = idle = 0.0
            for up, end in node.windows(now):
                if peers:
                    mine, free = _shared_seconds(
                        up, end, node.busy, [seg for p in peers for seg in p.busy.get(node_id, ())],
                        windows)
                else:
                    mine = max(0.0, end - up)
                    free = _idle_seconds(up, end, node.busy) if with_idle else 0.0
                seconds, idle = seconds + mine, idle + free
            yield node, seconds, idle

    def longest_and_dearest_iteration(self) -> tuple[float, float]:
        """(seconds, $) of the longest and of the dearest iteration charged so far: what a
        driver that takes a study over needs to judge its budget from the first step."""
        seconds = max((end - start for node in self._nodes.values()
                       for start, end, _ in node.busy), default=0.0)
        usd = max((usd for trial in self.trials.values() for usd in trial.iterations.values()),
                  default=0.0)
        return seconds, usd

    def charged_on(self, node_id: str) -> float:
        """$ charged to trials on one node (re-runs included)."""
        node = self._nodes[node_id]
        rate = node.info.usd_per_hour / 3600.0
        return sum((end - start) * share * rate for start, end, share in node.busy)


def _saved(paid: float, on_demand: float) -> float:
    """Percent saved against on-demand (0 when there is nothing to compare)."""
    return round(100.0 * (1 - paid / on_demand), 6) + 0.0 if on_demand else 0.0  # no "-0.0"


_STALE_S = 60.0  # a peer silent this long is not taken to run on


def _levels(busy: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The busy level over time as (start, end, level) segments, from intervals."""
    events = sorted(e for start, end, share in busy if end > start
                    for e in ((start, share), (end, -share)))
    segments, level = [], 0.0
    for (t, delta), (t_next, _) in pairwise(events):
        level += delta
        if t_next > t:
            segments.append((t, t_next, round(level, 9)))
    return segments


def _shared_seconds(up: float, down: float, own: list[tuple[float, float, float]],
                    others: list[tuple[float, float, float]],
                    windows: list[tuple[float, float]]) -> tuple[float, float]:
    """(own node-seconds, of them idle) in [up, down] of a node shared with other studies:
    the integral of own busy + max(0, 1 - all busy) / (1 + other studies running), own busy
    scaled down where the studies' busy levels add up past the node (clock skew)."""
    events: list[tuple[float, int, float]] = []  # (time, 0 own | 1 others | 2 running, delta)
    for kind, intervals in ((0, own), (1, others)):
        for start, end, share in intervals:
            start, end = max(start, up), min(end, down)
            if end > start:
                events += [(start, kind, share), (end, kind, -share)]
    for since, until in windows:
        start, end = max(since, up), min(until, down)
        if end > start:
            events += [(start, 2, 1.0), (end, 2, -1.0)]
    events.sort()
    mine = idle = 0.0
    level = [0.0, 0.0, 0.0]
    t = up
    for time, kind, delta in [*events, (down, 0, 0.0)]:
        busy = level[0] + level[1]
        free = max(0.0, 1.0 - busy) / (1.0 + round(level[2]))
        mine += (time - t) * (level[0] / max(1.0, busy) + free)
        idle += (time - t) * free
        level[kind] += delta
        t = time
    return mine, idle


def _idle_seconds(up: float, down: float, busy: list[tuple[float, float, float]]) -> float:
    """Node-seconds in [up, down] not used: the integral of max(0, 1 - busy share)."""
    events: list[tuple[float, float]] = []
    for start, end, share in busy:
        start, end = max(start, up), min(end, down)
        if end > start:
            events += [(start, share), (end, -share)]
    events.sort()
    idle, level, t = 0.0, 0.0, up
    for time, delta in events:
        idle += (time - t) * max(0.0, 1.0 - level)
        level, t = level + delta, time
    return idle + (down - t) * max(0.0, 1.0 - level)
