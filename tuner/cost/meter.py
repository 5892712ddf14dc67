"""The cost meter: dollars from node-seconds, with waste and idle time accounted.

Pure bookkeeping with time passed in (seconds on any one clock), so simulations and
tests run it without sleeping. For each reported iteration a trial is charged::

    seconds x node $/hour / 3600 x share      (share = trial GPUs / node GPUs, else CPUs)

An iteration charged a second time (a restart from an older checkpoint re-ran it)
moves its first charge to *wasted*. A node's uptime not covered by any trial is *idle*,
computed from the busy intervals, so ``useful + wasted + idle == cluster`` is a check
on the measurements, not an identity by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


class CostMeter:
    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self.trials: dict[str, TrialCost] = {}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the study record (JSON), restored by :meth:`from_dict`."""
        return {
            "nodes": {k: {"info": {**asdict(n.info), "market": n.info.market.value},
                          "up": n.up, "down": n.down, "busy": n.busy}
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
            meter._nodes[k] = _Node(info, n["up"], n["down"], [tuple(b) for b in n["busy"]])
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
        if node.node_id not in self._nodes:
            self._nodes[node.node_id] = _Node(node, at)

    def node_down(self, node_id: str, at: float) -> None:
        node = self._nodes.get(node_id)
        if node is not None and node.down is None:
            node.down = at

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
        return usd

    def totals(self, now: float) -> dict[str, float]:
        """Study totals in $, two headlines and their parts:

        * the trials: ``cost_usd`` (all charged, waste included), ``wasted_usd``,
          ``useful_usd``, and ``on_demand_equiv_usd`` (the same node-seconds on demand);
        * the cluster while the study ran (what the bill says): ``cluster_usd`` (every
          node's uptime, head and idle included), ``idle_usd``, and
          ``cluster_on_demand_usd`` (the same nodes for the same time on demand).
        """
        cost = sum(t.cost_usd for t in self.trials.values())
        wasted = sum(t.wasted_usd for t in self.trials.values())
        cluster, idle = self.node_bill(now)
        cluster_on_demand = self.cluster_usd(now, on_demand=True)
        on_demand = sum(t.on_demand_usd for t in self.trials.values())
        return {"cost_usd": cost, "wasted_usd": wasted, "useful_usd": cost - wasted,
                "on_demand_equiv_usd": on_demand, "savings_pct": _saved(cost, on_demand),
                "idle_usd": idle, "cluster_usd": cluster,
                "cluster_on_demand_usd": cluster_on_demand,
                "cluster_savings_pct": _saved(cluster, cluster_on_demand)}

    def cluster_usd(self, now: float, on_demand: bool = False) -> float:
        """Every node's uptime up to ``now`` at its price (or its on-demand price): the bill
        so far, cheap enough to ask at every step."""
        total = 0.0
        for node in self._nodes.values():
            end = node.down if node.down is not None else now
            rate = node.info.usd_per_hour
            if on_demand and node.info.on_demand_usd_per_hour:
                rate = node.info.on_demand_usd_per_hour
            total += max(0.0, end - node.up) * rate / 3600.0
        return total

    def cluster_usd_per_second(self) -> float:
        """What the live nodes cost per second now."""
        return sum(n.info.usd_per_hour for n in self._nodes.values() if n.down is None) / 3600

    def idle_by_kind(self, now: float) -> dict[str, tuple[float, float]]:
        """Per node kind (``"c5.xlarge spot"``): (idle $, idle share of that kind's $)."""
        kinds: dict[str, list[float]] = {}
        for node_id, node in self._nodes.items():
            cluster, idle = self.node_bill(now, {node_id})
            kind = kinds.setdefault(f"{node.info.instance_type} {node.info.market.value}",
                                    [0.0, 0.0])
            kind[0] += idle
            kind[1] += cluster
        return {k: (idle, idle / cluster if cluster else 0.0)
                for k, (idle, cluster) in sorted(kinds.items())}

    def node_bill(self, now: float, node_ids: set[str] | None = None) -> tuple[float, float]:
        """(cluster $, idle $) of the given nodes (default: all) up to ``now``."""
        cluster = idle = 0.0
        for node_id, node in self._nodes.items():
            if node_ids is not None and node_id not in node_ids:
                continue
            end = node.down if node.down is not None else now
            rate = node.info.usd_per_hour / 3600.0
            cluster += (end - node.up) * rate
            idle += _idle_seconds(node.up, end, node.busy) * rate
        return cluster, idle

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
