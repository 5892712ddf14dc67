"""The price catalog and the cost meter, on simulated time (no Ray, no sleeping)."""

from __future__ import annotations

import json

import pytest

from tuner.cost import CostMeter, Market, NodeInfo, PriceCatalog
from tuner.cost.catalog import COLUMNS
from tuner.cost.meter import Peer
from tuner.errors import ConfigError


def test_shipped_catalog_has_the_families_with_sources_and_dates():
    catalog = PriceCatalog.load()
    families = {t.split(".")[0] for t in catalog.instance_types}
    assert {"m5", "c5", "r5", "g4dn", "g5", "p3"} <= families
    for price in catalog:
        assert 0 < price.spot_usd_hour < price.on_demand_usd_hour
        assert price.on_demand_source and price.spot_source and price.date[:2] == "20"
    m5 = catalog.get("m5.large", "us-east-1")
    assert m5.hourly(Market.ON_DEMAND) == 0.096 and m5.vcpus == 2


def test_unknown_instance_type_or_region_suggests_a_fix():
    catalog = PriceCatalog.load()
    with pytest.raises(ConfigError, match=r"no price for 'm5.larg' in us-east-1 \(did you mean 'm5.large'\?\)"):
        catalog.get("m5.larg", "us-east-1")
    with pytest.raises(ConfigError, match=r"no prices for region 'us-east1' \(did you mean 'us-east-1'\?\)"):
        catalog.get("m5.large", "us-east1")
    for region in ("eu-west-1", "us-east-2"):  # AWS regions the file has no rows for: no guess
        with pytest.raises(ConfigError, match=rf"no prices for region '{region}'; this file has "
                                              r"us-east-1, us-west-2: for another, copy it"):
            catalog.get("m5.large", region)


@pytest.mark.parametrize("edit,message", [
    (lambda h, r: (h.replace(",spot_usd_hour", ""), r.replace(",0.04,", ",")), "spot_usd_hour: column missing"),
    (lambda h, r: (h, r.replace(",0.04,", ",-0.04,")), "line 2: spot_usd_hour: must be >= 0, got -0.04"),
    (lambda h, r: (h, r.replace(",0.04,", ",cheap,")), "line 2: spot_usd_hour: must be a number"),
    (lambda h, r: (h, r.replace(",2024-06-01", ",")), "line 2: date: is empty"),
    (lambda h, r: (h, r.replace(",2,0,", ",0,0,")),
     "line 2: vcpus: must be >= 1, got 0; fix the row"),
    (lambda h, r: (h, r.replace(",2,0,", ",2.5,0,")),
     "line 2: vcpus: must be a whole number, got 2.5"),
    (lambda h, r: (h, f"{r}\n{r}"), "line 3: m5.large in us-east-1 is priced on line 2 already; "
                                    "keep one row per instance type and region"),
])
def test_bad_price_files_name_file_line_and_column(tmp_path, monkeypatch, edit, message):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    header = ",".join(COLUMNS)
    row = "m5.large,us-east-1,2,0,8,0.096,0.04,page,advisor,2024-06-01"
    header, row = edit(header, row)
    path = tmp_path / "my_prices.csv"
    path.write_text(f"{header}\n{row}\n")
    with pytest.raises(ConfigError) as info:
        PriceCatalog.load(str(path))
    assert str(info.value).startswith("my_prices.csv: ") and message in str(info.value)


def test_a_whole_number_written_as_a_float_is_a_count(tmp_path):
    path = tmp_path / "my_prices.csv"
    path.write_text(f"{','.join(COLUMNS)}\n"
                    "g4dn.xlarge,us-east-1,4.0,1.0,16,0.526,0.2,page,advisor,2024-06-01\n")
    price = PriceCatalog.load(str(path)).get("g4dn.xlarge", "us-east-1")
    assert (price.vcpus, price.gpus) == (4, 1) and isinstance(price.vcpus, int)


def node(node_id="n1", usd=3.6, cpus=4.0, gpus=0.0, market=Market.SPOT, od=7.2):
    return NodeInfo(node_id, "m5.xlarge", "us-east-1", market, usd, cpus, gpus,
                    on_demand_usd_per_hour=od)


def test_a_trial_pays_its_share_of_the_node():
    meter = CostMeter()
    meter.node_up(node(usd=3.6, cpus=4), at=0)  # $0.001 per node-second
    usd = meter.charge("t1", "n1", iteration=1, seconds=10, end=10, cpus=1)
    assert usd == pytest.approx(10 * 0.001 / 4)
    meter.node_up(node("g", usd=3.6, cpus=8, gpus=2), at=0)
    assert meter.charge("t2", "g", 1, seconds=10, end=10, cpus=1, gpus=1) == pytest.approx(0.005)


def test_a_re_run_iteration_is_wasted():
    meter = CostMeter()
    meter.node_up(node(), at=0)
    for it in (1, 2, 3):
        meter.charge("t", "n1", it, seconds=4, end=4 * it, cpus=4)
    # crashed after 3 with the checkpoint at 2: iteration 3 runs again
    meter.charge("t", "n1", 3, seconds=4, end=16, cpus=4)
    trial = meter.trials["t"]
    assert trial.cost_usd == pytest.approx(16 * 0.001)
    assert trial.wasted_usd == pytest.approx(4 * 0.001)
    assert trial.lost_iterations == 1


def test_useful_plus_wasted_plus_idle_is_the_cluster_bill():
    meter = CostMeter()
    meter.node_up(node("a", usd=3.6, cpus=2), at=0)
    meter.node_up(node("b", usd=7.2, cpus=2), at=5)
    meter.charge("t1", "a", 1, seconds=10, end=10, cpus=1)
    meter.charge("t2", "a", 1, seconds=20, end=22, cpus=1)
    meter.charge("t3", "b", 1, seconds=10, end=20, cpus=2)
    meter.charge("t3", "b", 1, seconds=10, end=30, cpus=2)  # a re-run
    meter.node_down("b", at=40)
    totals = meter.totals(now=50)
    assert totals["cluster_usd"] == pytest.approx(50 * 0.001 + 35 * 0.002)
    assert totals["wasted_usd"] == pytest.approx(10 * 0.002)
    assert totals["useful_usd"] + totals["wasted_usd"] + totals["idle_usd"] == \
        pytest.approx(totals["cluster_usd"])
    # node a is spot at half the on-demand price; node b is charged its on-demand price
    assert totals["on_demand_equiv_usd"] == pytest.approx(2 * 0.015 + 0.04)
    assert totals["savings_pct"] == pytest.approx(100 * (1 - 0.055 / 0.07))


def test_the_meter_survives_a_round_trip_through_the_record():
    import json

    meter = CostMeter()
    meter.node_up(node("a"), at=0)
    meter.charge("t", "a", 1, seconds=5, end=5, cpus=2)
    meter.charge("t", "a", 1, seconds=5, end=12, cpus=2)
    again = CostMeter.from_dict(json.loads(json.dumps(meter.to_dict())))
    assert again.totals(now=20) == meter.totals(now=20)
    again.charge("t", "a", 2, seconds=5, end=17, cpus=2)
    assert again.trials["t"].wasted_usd == meter.trials["t"].wasted_usd
    assert again.trials["t"].lost_iterations == 1


def test_nodes_are_priced_from_their_labels_or_the_default():
    from tuner.cost.nodes import labels_for, node_info

    catalog = PriceCatalog.load()
    spot = {"NodeID": "x", "Resources": {"CPU": 4.0},
            "Labels": labels_for("spot", "c5.xlarge", "us-west-2", "us-west-2a")}
    info = node_info(spot, catalog, "m5.large", Market.ON_DEMAND, "us-east-1")
    assert (info.market, info.instance_type, info.zone, info.cpus) == \
        (Market.SPOT, "c5.xlarge", "us-west-2a", 4.0)
    assert info.usd_per_hour == catalog.get("c5.xlarge", "us-west-2").spot_usd_hour
    bare = node_info({"NodeID": "y", "Resources": {"CPU": 2.0}}, catalog, "m5.large",
                     Market.ON_DEMAND, "us-east-1")
    assert not bare.labelled and bare.usd_per_hour == 0.096


# --- studies sharing one cluster ---------------------------------------------------------------

def _two_studies():
    """Study A runs 0-100 s, study B 40-140 s, on one head (no trials) and one 2-CPU worker
    at $0.001 per node-second each; A's trial holds half the worker 0-60 s, B's 50-140 s."""
    a, b = CostMeter(), CostMeter()
    for meter, since in ((a, 0.0), (b, 40.0)):
        meter.node_up(node("head", usd=3.6, cpus=2), at=since)
        meter.node_up(node("w", usd=3.6, cpus=2), at=since)
    for end in range(10, 61, 10):
        a.charge("a1", "w", end // 10, seconds=10, end=end, cpus=1)
    a.trial_ended("a1")
    for end in range(60, 141, 10):
        b.charge("b1", "w", end // 10, seconds=10, end=end, cpus=1)
    return a, b


def _exchange(a, b, a_now, b_now, a_ended=True, b_ended=True):
    a.peers = [Peer.from_dict(json.loads(json.dumps(b.published(40.0, b_now, ended=b_ended))))]
    b.peers = [Peer.from_dict(json.loads(json.dumps(a.published(0.0, a_now, ended=a_ended))))]


def test_studies_sharing_a_cluster_split_its_idle_time_and_add_up_to_its_bill():
    a, b = _two_studies()
    _exchange(a, b, a_now=100, b_now=140)
    cluster_a, cluster_b = a.totals(now=100)["cluster_usd"], b.totals(now=140)["cluster_usd"]
    assert cluster_a + cluster_b == pytest.approx(2 * 140 * 0.001)  # both nodes, 0-140 s
    # A pays the head alone 0-40 s and half of it 40-100 s; on the worker, its trial's
    # 30 node-seconds plus the free half alone 0-40 s and split with B 40-50 s (50-60 s both
    # trials fill it) and 60-100 s.
    head_a = 40 + 60 / 2
    worker_a = 30 + 40 * 0.5 + 10 * 0.5 / 2 + 40 * 0.5 / 2
    assert cluster_a == pytest.approx((head_a + worker_a) * 0.001)
    for meter, now in ((a, 100), (b, 140)):
        totals = meter.totals(now=now)
        assert totals["useful_usd"] + totals["idle_usd"] == pytest.approx(totals["cluster_usd"])


def test_a_study_alone_on_its_cluster_pays_for_all_of_it():
    a, _ = _two_studies()
    assert a.totals(now=100)["cluster_usd"] == pytest.approx(2 * 100 * 0.001)


def test_a_running_peer_is_taken_to_hold_its_nodes_until_it_speaks_again():
    a, b = _two_studies()
    # B last spoke at 75 s, halfway through an iteration (its last report was at 70 s),
    # its trial running; A ends at 100 s.
    b_then = CostMeter()
    for node_id in ("head", "w"):
        b_then.node_up(node(node_id, usd=3.6, cpus=2), at=40.0)
    for end in range(60, 71, 10):
        b_then.charge("b1", "w", end // 10, seconds=10, end=end, cpus=1)
    a.peers = [Peer.from_dict(b_then.published(40.0, 75.0))]
    guessed = a.totals(now=100)["cluster_usd"]
    a.peers = [Peer.from_dict(b.published(40.0, 140.0))]
    assert guessed == pytest.approx(a.totals(now=100)["cluster_usd"])
    # silent for longer than a minute: no longer taken to run on
    a.peers = [Peer.from_dict(b_then.published(40.0, 75.0))]
    assert a.totals(now=200)["cluster_usd"] > guessed + 0.09


def test_what_a_study_publishes_merges_back_to_back_iterations():
    a, _ = _two_studies()
    published = a.published(0.0, 100.0)
    assert published["busy"] == {"w": [[0.0, 60.0, 0.5]]} and published["running"] == {}
