"""When to scale a fleet of worker kinds down and up again: idle workers removed after a
timeout, as Ray's autoscaler does with ``idle_timeout_minutes``, and a removed kind
started again when resources are asked for that the live nodes cannot give.

Pure logic with time passed in, as :class:`~tuner.spot.market.SpotMarket`; the local
spot cluster (:mod:`tuner.spot.local`) feeds it the cluster's status and acts on it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Kind(Hashable, Protocol):
    """A worker kind (the local cluster's ``WorkerType``): what it holds for trials."""

    @property
    def cpus(self) -> int: ...


K = TypeVar("K", bound=Kind)


@dataclass(frozen=True)
class NodeView:
    """One node as the cluster's status shows it at one moment."""
    idle_s: float | None  # how long Ray has seen none of its resources in use; None: busy
    free: Mapping[str, float] = field(default_factory=dict)  # resources not in use


@dataclass
class ScaleEvents(Generic[K]):
    remove: list[str] = field(default_factory=list)  # idle workers to remove
    add: list[K] = field(default_factory=list)  # kinds to start for waiting demand


class IdleScaler(Generic[K]):
    """Idle scale-down and scale-up on demand for a fleet of worker kinds: pure logic with
    time passed in, as :class:`~tuner.spot.market.SpotMarket`.

    A worker is idle since Ray's own idle clock says (none of its resources in use), never
    earlier than the last time this scaler saw it busy; idle for ``timeout_s`` it is to be
    removed. A resource request the live nodes' free resources
    cannot hold starts a kind of the fleet that is missing (fewer live than configured),
    the first in fleet order that holds it: the fleet is each kind's ``max_workers``, and
    ``min_workers`` is 0, as in ``cluster/aws-spot.yaml``.
    """

    def __init__(self, timeout_s: float, fleet: Iterable[K]) -> None:
        if not 0 < timeout_s < float("inf"):
            raise ValueError(f"timeout_s must be a finite number > 0, got {timeout_s}")
        self.timeout_s, self.fleet = timeout_s, tuple(fleet)
        self._idle_since: dict[str, float] = {}
        self._busy_at: dict[str, float] = {}

    def idle_since(self, node_id: str) -> float | None:
        return self._idle_since.get(node_id)

    def busy(self, node_id: str, now: float) -> None:
        """``node_id`` was found in use at ``now`` (e.g. it refused an idle drain)."""
        self._busy_at[node_id] = now
        self._idle_since.pop(node_id, None)

    def forget(self, node_id: str) -> None:
        self._busy_at.pop(node_id, None)
        self._idle_since.pop(node_id, None)

    def step(self, now: float, workers: Mapping[str, K], nodes: Mapping[str, NodeView],
             demand: Iterable[Mapping[str, float]] = (),
             keep: Iterable[str] = ()) -> ScaleEvents[K]:
        """At ``now``: the live ``workers`` (node id: kind), every node's view (a worker
        missing from ``nodes`` counts as busy: it is still starting), the resource bundles
        waiting (``{"CPU": 1}`` each) and workers never to remove (``keep``: under a spot
        notice, replaced anyway)."""
        events: ScaleEvents[K] = ScaleEvents()
        for node_id in set(self._idle_since) | set(self._busy_at):
            if node_id not in workers:
                self.forget(node_id)
        keep = set(keep)
        for node_id in sorted(workers):
            view = nodes.get(node_id)
            if view is None or view.idle_s is None:
                self.busy(node_id, now)
                continue
            since = max(now - view.idle_s, self._busy_at.get(node_id, -math.inf))
            since = self._idle_since[node_id] = max(since, self._idle_since.get(node_id, since))
            if now - since >= self.timeout_s and node_id not in keep:
                events.remove.append(node_id)
        live = Counter(kind for node_id, kind in workers.items() if node_id not in events.remove)
        events.add = self.to_add(live, [v.free for n, v in nodes.items()
                                        if n not in events.remove], demand)
        return events

    def to_add(self, live: Mapping[K, int], free: Iterable[Mapping[str, float]],
               demand: Iterable[Mapping[str, float]]) -> list[K]:
        """Kinds to start so that every bundle of ``demand`` fits: each first goes where
        ``free`` resources hold it, then on a kind already chosen, then on a new one."""
        missing = Counter(self.fleet) - Counter(live)
        room = [dict(f) for f in free]
        add: list[K] = []
        for bundle in sorted(demand, key=lambda b: -sum(b.values())):
            spot = next((r for r in room if _fits(bundle, r)), None)
            if spot is None:
                kind = next((k for k in dict.fromkeys(self.fleet)
                             if missing[k] > 0 and _fits(bundle, capacity(k))), None)
                if kind is None:
                    continue  # no kind of the fleet holds it (Ray reports it infeasible)
                missing[kind] -= 1
                add.append(kind)
                spot = capacity(kind)
                room.append(spot)
            for key, amount in bundle.items():
                spot[key] = spot.get(key, 0.0) - amount
        return add


_UNMETERED = {"memory": math.inf, "object_store_memory": math.inf}  # a new node has enough


def capacity(kind: Kind) -> dict[str, float]:
    """What a new node of ``kind`` holds."""
    return {"CPU": float(kind.cpus), **_UNMETERED}


def _fits(bundle: Mapping[str, float], free: Mapping[str, float]) -> bool:
    return all(free.get(key, 0.0) >= amount - 1e-9 for key, amount in bundle.items() if amount > 0)
