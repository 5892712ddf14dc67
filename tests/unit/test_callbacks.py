"""The engine's Tune callback when the cluster's shared store does not answer.

Faked: the GCS's key-value calls (they raise, as when the GCS is busy or restarting) and
the study's bookkeeping (an object with the two members the exchange reads). Real: the
callback and ASHA.
"""

from __future__ import annotations

import logging

from tuner import ray_compat
from tuner.engine import callbacks
from tuner.engine.search import _Asha


class Book:
    cluster_key = "study/x-0"

    def published(self, ended: bool = False) -> bytes:
        return b"{}"

    def peers_seen(self, items):
        raise AssertionError("no peers were read")


def test_a_failed_exchange_of_cluster_shares_is_said_once_and_retried(monkeypatch, caplog,
                                                                      tmp_path):
    calls = []

    def put(key, value):
        calls.append(key)
        raise ConnectionError("GCS unavailable")

    monkeypatch.setattr(ray_compat, "cluster_kv_put", put)
    monkeypatch.setitem(callbacks._BOOKS, str(tmp_path), Book())
    study = callbacks._StudyCallback(str(tmp_path), _Asha(time_attr="training_iteration",
                                                          max_t=4), verbose=False)
    with caplog.at_level(logging.WARNING, logger=callbacks.__name__):
        for _ in range(3):
            study._share_cluster()
    assert len(calls) == 3  # every poll tries again
    said = [r.getMessage() for r in caplog.records if r.name == callbacks.__name__]
    assert said == ["could not exchange cluster shares with other studies (ConnectionError: "
                    "GCS unavailable); trying again at each poll"]
