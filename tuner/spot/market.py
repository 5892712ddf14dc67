"""A spot market simulator: interruption notices at a hazard rate, on a compressed clock.

Pure logic with time passed in: :meth:`SpotMarket.step` says, for the spot nodes alive at
simulated time ``now``, which receive a notice and which must now be killed. A hazard of
``h`` preemptions per node-hour gives each node a notice in an interval ``dt`` with
probability ``1 - exp(-h * dt / 3600)``; AWS gives two minutes of notice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class MarketEvents:
    notices: dict[str, float] = field(default_factory=dict)  # node -> when it goes (sim s)
    kills: list[str] = field(default_factory=list)


class SpotMarket:
    def __init__(self, hazard_per_hour: float, notice_s: float = 120.0, seed: int = 0) -> None:
        if hazard_per_hour < 0:
            raise ValueError(f"hazard_per_hour must be >= 0, got {hazard_per_hour}")
        self.hazard_per_hour, self.notice_s = hazard_per_hour, notice_s
        self._rng = random.Random(seed)
        self._pending: dict[str, float] = {}  # node -> termination time
        self._interrupted: set[str] = set()  # nodes to get a notice at the next step
        self._last: float | None = None

    def interrupt(self, node: str) -> None:
        """Give ``node`` a notice at the next step, whatever the hazard (AWS may reclaim
        any spot instance at any time)."""
        self._interrupted.add(node)

    def step(self, spot_nodes: Iterable[str], now: float) -> MarketEvents:
        events = MarketEvents()
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        p = 1.0 - math.exp(-self.hazard_per_hour * dt / 3600.0)
        for node in spot_nodes:
            if node in self._pending:
                if now >= self._pending[node]:
                    events.kills.append(node)
                    del self._pending[node]
            elif node in self._interrupted or (p and self._rng.random() < p):
                self._pending[node] = now + self.notice_s
                events.notices[node] = self._pending[node]
        self._interrupted.clear()
        return events
