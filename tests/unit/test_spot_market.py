"""The spot market simulator's hazard and notice timing, on a simulated clock (no sleeps)."""

import pytest

from tuner.spot.market import SpotMarket


def run(market, nodes, hours, tick_s=10.0):
    notices, kills, t = {}, [], 0.0
    while t <= hours * 3600:
        events = market.step(nodes, t)
        notices.update({f"{n}@{t}": when for n, when in events.notices.items()})
        kills += [(n, t) for n in events.kills]
        t += tick_s
    return notices, kills


def test_no_hazard_no_notices():
    assert run(SpotMarket(0.0), ["a", "b"], hours=10) == ({}, [])


def test_notices_arrive_at_the_hazard_rate_and_kills_follow_the_notice():
    market = SpotMarket(hazard_per_hour=1.3, notice_s=120, seed=7)
    # 20 nodes for 10 h: each preempted node is replaced by one of the same name.
    notices, kills = run(market, [f"n{i}" for i in range(20)], hours=10)
    rate = len(notices) / (20 * 10)
    assert rate == pytest.approx(1.3, rel=0.2)
    for key, when in notices.items():
        _, issued = key.split("@")
        assert when == pytest.approx(float(issued) + 120)
    assert len(kills) >= len(notices) - 20  # all but the last few notices have expired


def test_negative_hazard_is_refused():
    with pytest.raises(ValueError, match="hazard_per_hour must be >= 0"):
        SpotMarket(-1)


def test_an_interrupted_node_gets_its_notice_at_the_next_step_and_goes_when_it_expires():
    market = SpotMarket(hazard_per_hour=0.0, notice_s=120)
    market.step(["a", "b"], 0.0)
    market.interrupt("a")
    events = market.step(["a", "b"], 10.0)
    assert events.notices == {"a": 130.0} and events.kills == []
    assert market.step(["a", "b"], 129.0).kills == []
    assert market.step(["a", "b"], 130.0).kills == ["a"]
    assert run(market, ["a", "b"], hours=1) == ({}, [])  # once: no hazard, no more notices
