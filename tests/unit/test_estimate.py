"""`tuner estimate`: ASHA's expected work priced before anything runs (no Ray)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuner.config import StudySettings
from tuner.cost import PriceCatalog
from tuner.estimate import estimate, iterations_per_trial, rungs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_asha_rungs_and_expected_iterations():
    assert rungs(9, 1, 3) == [1, 3, 9]
    assert iterations_per_trial(9, 1, 3) == pytest.approx(1 + 2 / 3 + 6 / 9)
    assert iterations_per_trial(30, 30, 3) == 30  # no early stopping: every trial runs max_t


def test_dollars_scale_with_price_and_share():
    settings = StudySettings(metric="acc", num_samples=10, max_t=9, grace_period=1,
                             reduction_factor=3, default_instance_type="c5.xlarge",
                             resources_per_trial={"cpu": 1})
    e = estimate(settings, seconds_per_iteration=36.0)
    price = PriceCatalog.load().get("c5.xlarge", "us-east-1")
    seconds = 10 * (1 + 2 / 3 + 6 / 9) * 36.0
    assert e.usd["on-demand"] == pytest.approx(seconds * price.on_demand_usd_hour / 3600 / 4)
    assert e.usd["spot"] == pytest.approx(seconds * price.spot_usd_hour / 3600 / 4)
    assert e.concurrency == 4 and e.wall_seconds == pytest.approx(seconds / 4)


def test_the_cluster_bill_counts_the_head_and_whole_workers_for_the_study():
    settings = StudySettings(metric="acc", num_samples=10, max_t=9, grace_period=1,
                             default_instance_type="c5.xlarge", resources_per_trial={"cpu": 1},
                             max_concurrent_trials=6)  # 6 one-CPU trials: two 4-vCPU workers
    e = estimate(settings, seconds_per_iteration=36.0)
    price = PriceCatalog.load().get("c5.xlarge", "us-east-1")
    hours = e.wall_seconds / 3600
    assert e.workers == 2
    assert e.cluster_usd["spot"] == pytest.approx(
        hours * (price.on_demand_usd_hour + 2 * price.spot_usd_hour))
    assert e.cluster_usd["on-demand"] == pytest.approx(hours * 3 * price.on_demand_usd_hour)
    assert all(e.cluster_usd[m] > e.usd[m] for m in e.usd)  # the bill is more than the trials


def test_cli_estimate_needs_seconds_per_iteration(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(open(os.path.join(ROOT, "examples", "digits_mlp.yaml")).read()
                    .replace("../search_spaces", os.path.join(ROOT, "search_spaces"))
                    .replace("seconds_per_iteration:", "#"))
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate", str(exp)],
                         capture_output=True, text=True, cwd=os.path.join(ROOT, "examples"))
    assert out.returncode == 2 and "exp.yaml: seconds_per_iteration: is needed" in out.stderr
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate", str(exp),
                          "--seconds-per-iteration", "2"], capture_output=True, text=True,
                         cwd=os.path.join(ROOT, "examples"))
    assert out.returncode == 0, out.stderr
    assert "spot" in out.stdout and "on-demand" in out.stdout


def test_a_study_of_seconds_is_estimated_in_seconds_and_a_long_one_in_minutes_or_hours():
    from tuner.estimate import duration

    assert [duration(s) for s in (0.4, 3.1, 59.6, 119, 120, 90 * 60, 2 * 3600, 30 * 3600)] == [
        "under 1 s", "3 s", "60 s", "119 s", "2 min", "90 min", "2.0 h", "30.0 h"]
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate",
                          os.path.join(ROOT, "examples", "digits_mlp.yaml")],
                         capture_output=True, text=True, cwd=os.path.join(ROOT, "examples"))
    assert out.returncode == 0, out.stderr
    assert "2 trials at a time: about 18 s\n" in out.stdout  # 123 iterations of 0.3 s, 2 at once
