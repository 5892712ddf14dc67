"""The preemption watcher: one per spot node, acting on the interruption notice.

On a notice it drains the node's Ray raylet with reason PREEMPTION and a deadline a
safe margin before the termination time. Ray then schedules nothing new there, Tune
does not count the trial's loss against ``max_failures``, and ``tuner.report`` sees the
drain and checkpoints every iteration until the node is gone.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable

from tuner.spot.imds import InstanceMetadata, Notice

log = logging.getLogger(__name__)
Drain = Callable[[str, str, int], bool]  # (node id hex, message, deadline ms) -> accepted


class PreemptionWatcher:
    def __init__(self, node_id: str, metadata: InstanceMetadata, drain: Drain,
                 margin_s: float = 15.0, clock: Callable[[], float] = time.time) -> None:
        self.node_id, self._metadata, self._drain = node_id, metadata, drain
        self._margin, self._clock = margin_s, clock
        self.drained: Notice | None = None

    def poll(self) -> bool:
        """Check once; drain on a notice. True once the node has been drained."""
        if self.drained is not None:
            return True
        try:
            notice = self._metadata.notice()
        except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
            # the endpoint hiccuped or answered garbled: try again next poll
            log.warning("instance metadata unreachable: %s", exc)
            return False
        if notice is None:
            return False
        deadline = max(self._clock(), notice.time - self._margin)
        message = f"spot {notice.action} at {notice.time:.0f}"
        try:
            accepted = self._drain(self.node_id, message, int(deadline * 1000))
        except Exception as exc:  # the GCS is busy or restarting: try again next poll
            log.warning("drain of %s failed: %s", self.node_id[:8], exc)
            return False
        if accepted:
            self.drained = notice
            log.warning("node %s draining: %s", self.node_id[:8], message)
        return self.drained is not None

    def run(self, interval_s: float = 5.0, sleep: Callable[[float], None] = time.sleep,
            should_stop: Callable[[], bool] = lambda: False) -> Notice | None:
        while not should_stop():
            if self.poll():
                return self.drained
            sleep(interval_s)
        return None


def gcs_drain(gcs_address: str) -> Drain:
    """A drain function talking to the cluster's GCS (Ray's own drain API)."""
    from tuner.ray_compat import preemption_drain

    drain_node = preemption_drain(gcs_address)

    def drain(node_id: str, message: str, deadline_ms: int) -> bool:
        accepted, rejection = drain_node(node_id, message, deadline_ms)
        if not accepted:
            log.warning("drain of %s refused: %s", node_id[:8], rejection)
        return accepted

    return drain
