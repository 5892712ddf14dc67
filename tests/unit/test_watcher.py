"""The preemption watcher (PreemptionWatcher): from a spot interruption notice to exactly one
drain of the node, with a deadline a safe margin before the instance goes.

Faked: the instance metadata client (an object with InstanceMetadata's ``notice()``,
answering what the test sets), the drain (a function that records its calls and accepts,
refuses or raises as told), the clock, and ``run()``'s sleep. The last test uses the real
metadata client against tuner's local IMDSv2 stand-in on 127.0.0.1. No Ray.
"""

from __future__ import annotations

import pytest

from tuner.spot.imds import FakeMetadataServer, InstanceMetadata, Notice
from tuner.spot.watcher import PreemptionWatcher

NODE = "a1b2c3d4" + "0" * 48  # a node id in hex, as Ray gives it
NOW = 1_800_000_000.0


class Metadata:
    """InstanceMetadata's interface: ``notice()`` is the pending notice or None, or raises."""

    def __init__(self) -> None:
        self.pending: Notice | None = None
        self.error: OSError | None = None
        self.asked = 0

    def notice(self) -> Notice | None:
        self.asked += 1
        if self.error is not None:
            raise self.error
        return self.pending


class Drain:
    """Records ``(node id, message, deadline ms)``; answers with the next of ``answers``
    (True: accepted, False: refused, an exception: raised), then True."""

    def __init__(self, *answers) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self._answers = list(answers)

    def __call__(self, node_id: str, message: str, deadline_ms: int) -> bool:
        self.calls.append((node_id, message, deadline_ms))
        answer = self._answers.pop(0) if self._answers else True
        if isinstance(answer, BaseException):
            raise answer
        return answer


def watcher(drain, metadata=None, margin_s=15.0, now=NOW):
    return PreemptionWatcher(NODE, metadata or Metadata(), drain, margin_s=margin_s,
                             clock=lambda: now)


def test_without_a_notice_the_node_is_not_drained():
    metadata, drain = Metadata(), Drain()
    w = watcher(drain, metadata)
    assert [w.poll() for _ in range(3)] == [False, False, False]
    assert drain.calls == [] and w.drained is None
    assert metadata.asked == 3


def test_a_notice_drains_the_node_once_with_a_deadline_margin_before_it_goes():
    metadata, drain = Metadata(), Drain()
    notice = Notice("terminate", NOW + 120.0)
    metadata.pending = notice
    w = watcher(drain, metadata, margin_s=15.0)
    assert w.poll()
    assert w.drained == notice
    ((node_id, message, deadline_ms),) = drain.calls
    assert node_id == NODE
    assert deadline_ms == int((NOW + 120.0 - 15.0) * 1000)
    assert "terminate" in message and f"{notice.time:.0f}" in message


def test_a_notice_closer_than_the_margin_gets_a_deadline_of_now_not_in_the_past():
    metadata, drain = Metadata(), Drain()
    metadata.pending = Notice("stop", NOW + 5.0)
    assert watcher(drain, metadata, margin_s=15.0).poll()
    ((_, message, deadline_ms),) = drain.calls
    assert deadline_ms == int(NOW * 1000)
    assert "stop" in message


def test_once_drained_further_polls_neither_drain_again_nor_ask_the_metadata():
    metadata, drain = Metadata(), Drain()
    metadata.pending = Notice("terminate", NOW + 120.0)
    w = watcher(drain, metadata)
    assert w.poll()
    asked = metadata.asked
    metadata.pending = Notice("terminate", NOW + 60.0)  # even if the notice changes
    assert [w.poll() for _ in range(3)] == [True, True, True]
    assert len(drain.calls) == 1 and metadata.asked == asked
    assert w.drained.time == NOW + 120.0


def test_a_drain_that_raises_is_tried_again_on_the_next_poll():
    metadata, drain = Metadata(), Drain(RuntimeError("GCS busy"))
    metadata.pending = Notice("terminate", NOW + 120.0)
    w = watcher(drain, metadata)
    assert not w.poll() and w.drained is None
    assert w.poll() and w.drained is not None
    assert len(drain.calls) == 2 and drain.calls[0] == drain.calls[1]


def test_a_refused_drain_is_tried_again_on_the_next_poll():
    metadata, drain = Metadata(), Drain(False, False)
    metadata.pending = Notice("terminate", NOW + 120.0)
    w = watcher(drain, metadata)
    assert [w.poll(), w.poll(), w.poll()] == [False, False, True]
    assert len(drain.calls) == 3
    assert w.poll() and len(drain.calls) == 3


def test_an_unreachable_metadata_endpoint_is_asked_again_on_the_next_poll():
    metadata, drain = Metadata(), Drain()
    metadata.error = ConnectionRefusedError("169.254.169.254:80")
    w = watcher(drain, metadata)
    assert not w.poll() and drain.calls == []
    metadata.error, metadata.pending = None, Notice("terminate", NOW + 120.0)
    assert w.poll() and len(drain.calls) == 1


def test_run_polls_at_its_interval_until_the_node_is_drained_without_sleeping_for_real():
    metadata, drain = Metadata(), Drain()
    w = watcher(drain, metadata)
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 2:  # the notice arrives during the second wait
            metadata.pending = Notice("terminate", NOW + 120.0)

    checks = []

    def should_stop():  # a bound, so a loop that never sees the notice fails, not hangs
        checks.append(True)
        return len(checks) > 10

    assert w.run(interval_s=7.0, sleep=sleep, should_stop=should_stop) == metadata.pending
    assert slept == [7.0, 7.0]
    assert metadata.asked == 3 and len(drain.calls) == 1


def test_run_returns_none_when_told_to_stop_before_any_notice():
    metadata, drain = Metadata(), Drain()
    w = watcher(drain, metadata)
    slept, checks = [], []

    def should_stop():
        checks.append(True)
        return len(checks) > 3

    assert w.run(interval_s=2.0, sleep=slept.append, should_stop=should_stop) is None
    assert metadata.asked == 3 and slept == [2.0, 2.0, 2.0]
    assert drain.calls == [] and w.drained is None


def test_run_told_to_stop_at_once_neither_polls_nor_sleeps():
    metadata, drain = Metadata(), Drain()
    slept = []
    assert watcher(drain, metadata).run(sleep=slept.append, should_stop=lambda: True) is None
    assert metadata.asked == 0 and slept == []


def test_the_real_metadata_client_reads_a_notice_the_watcher_drains_on():
    """InstanceMetadata against tuner's IMDSv2 stand-in on 127.0.0.1 (token, then 404 until
    a notice is issued); the drain is faked."""
    imds = FakeMetadataServer()
    try:
        drain = Drain()
        w = watcher(drain, InstanceMetadata(imds.endpoint, timeout_s=5.0), margin_s=10.0)
        assert not w.poll() and drain.calls == []
        imds.issue(at=NOW + 120.0)
        assert w.poll()
        assert w.drained == Notice("terminate", NOW + 120.0)
        assert drain.calls[0][2] == int((NOW + 110.0) * 1000)
    finally:
        imds.close()


@pytest.mark.parametrize("margin_s", [0.0, 30.0])
def test_the_margin_is_the_watchers_setting(margin_s):
    metadata, drain = Metadata(), Drain()
    metadata.pending = Notice("terminate", NOW + 120.0)
    assert watcher(drain, metadata, margin_s=margin_s).poll()
    assert drain.calls[0][2] == int((NOW + 120.0 - margin_s) * 1000)
