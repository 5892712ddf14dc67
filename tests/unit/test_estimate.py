"""`tuner estimate`: ASHA's expected work priced before anything runs (no Ray)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuner.config import StudySettings
from tuner.cost import PriceCatalog
from tuner.errors import ConfigError
from tuner.estimate import estimate, expected_iterations, rungs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ray_asha_iterations(num_samples, max_t, grace, eta, seed):
    """The trials' iterations when Ray's own ASHA decides, trial after trial, on values
    drawn as the estimate draws them (each trial ranks the same at every rung)."""
    import numpy as np
    from ray.tune.schedulers import AsyncHyperBandScheduler

    asha = AsyncHyperBandScheduler(time_attr="it", metric="v", mode="max", max_t=max_t,
                                   grace_period=grace, reduction_factor=eta)

    class Trial:
        def __init__(self, i):
            self.trial_id = str(i)

    total = 0
    for i, value in enumerate(np.random.default_rng(seed).random(num_samples).tolist()):
        trial = Trial(i)
        asha.on_trial_add(None, trial)
        for it in range(1, max_t + 1):
            if asha.on_trial_result(None, trial, {"it": it, "v": value}) == "STOP" or it == max_t:
                total += it
                break
    return total


def test_asha_rungs():
    assert rungs(9, 1, 3) == [1, 3, 9]
    assert rungs(30, 2, 3) == [2, 6, 18, 30]


def test_the_work_is_asha_s_own_rule_simulated():
    """Each draw of the estimate is what Ray's AsyncHyperBandScheduler decides on the same
    values (the scheduler driven directly, with a stand-in trial object)."""
    for n, max_t, grace, eta in ((24, 30, 2, 3), (10, 9, 1, 3), (40, 27, 1, 2)):
        one_draw = expected_iterations(n, max_t, grace, eta, seed=7, draws=1)
        assert one_draw == _ray_asha_iterations(n, max_t, grace, eta, seed=7)


def test_a_small_study_runs_more_than_one_in_eta_predicts_and_a_large_one_about_that():
    at_one_in_eta = 2 + 4 / 3 + 12 / 9 + 12 / 27  # per trial: rungs 2, 6, 18, then 30
    assert expected_iterations(24, 30, 2, 3) / 24 > 1.5 * at_one_in_eta
    assert expected_iterations(5000, 30, 2, 3) / 5000 == pytest.approx(at_one_in_eta, rel=0.05)
    assert expected_iterations(30, 30, 30, 3) == 30 * 30  # no early stopping: every trial runs max_t


def test_dollars_scale_with_price_and_share():
    settings = StudySettings(metric="acc", num_samples=10, max_t=9, grace_period=1,
                             reduction_factor=3, default_instance_type="c5.xlarge",
                             resources_per_trial={"cpu": 1})
    e = estimate(settings, seconds_per_iteration=36.0)
    price = PriceCatalog.load().get("c5.xlarge", "us-east-1")
    seconds = expected_iterations(10, 9, 1, 3) * 36.0
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
    assert "2 trials at a time: about 33 s of training" in out.stdout  # 219 x 0.3 s, 2 at once


def test_a_budget_is_set_against_the_estimate_and_from_a_study_without_reports_is_refused(
        tmp_path):
    from tuner.record import StudyRecord

    exp = tmp_path / "exp.yaml"
    exp.write_text(open(os.path.join(ROOT, "examples", "digits_mlp.yaml")).read()
                   .replace("../search_spaces", os.path.join(ROOT, "search_spaces"))
                   + "budget_usd: 0.0005\n")
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate", "exp.yaml"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    from tuner.config import load_experiment

    e = estimate(load_experiment(exp).settings, seconds_per_iteration=0.3)
    spot, on_demand = (round(100 * e.cluster_usd[m] / 0.0005) for m in ("spot", "on-demand"))
    assert spot > 100
    assert (f"budget_usd $0.0005000 caps the cluster bill; the estimate is {spot}% of it with "
            f"spot workers, {on_demand}% of it with on-demand workers") in out.stdout
    StudyRecord.create(str(tmp_path / "silent"), name="silent", metric="val_accuracy",
                       mode="max", num_samples=2, mlflow_uri="sqlite:///m.db",
                       mlflow_experiment="silent", parent_run_id="p", settings={})
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate", "exp.yaml", "--from",
                          "silent"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: silent: no iteration of that study was measured")


@pytest.mark.parametrize("resources, fits", [({"cpu": 4}, True), ({"cpu": 5}, False),
                                             ({"cpu": 1, "gpu": 1}, False)])
def test_resources_one_node_of_the_priced_type_cannot_hold_are_refused(resources, fits):
    settings = StudySettings(metric="acc", default_instance_type="c5.xlarge",
                             resources_per_trial=resources)
    if fits:
        assert estimate(settings, 1.0, source="exp.yaml").concurrency == 1
        return
    with pytest.raises(ConfigError, match=r"^exp.yaml: resources_per_trial: .* does not fit one "
                                          r"c5.xlarge \(4 vCPUs, 0 GPUs\)"):
        estimate(settings, 1.0, source="exp.yaml")


def test_a_non_positive_seconds_per_iteration_on_the_command_line_is_named_as_such(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate",
                          os.path.join(ROOT, "examples", "digits_mlp.yaml"),
                          "--seconds-per-iteration", "-5"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: command line: --seconds-per-iteration: must be a "
                                  "number of seconds > 0, got -5")


def test_the_cluster_can_be_described_on_the_command_line(tmp_path):
    """`--workers 3 --instance-type c5.xlarge`: 3 four-vCPU workers hold 12 one-CPU trials
    at once, and the bill is 3 of them and a c5.xlarge head; a type with no price is named."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(open(os.path.join(ROOT, "examples", "digits_mlp.yaml")).read()
                   .replace("../search_spaces", os.path.join(ROOT, "search_spaces")))
    settings = StudySettings(metric="acc", num_samples=24, default_instance_type="c5.xlarge",
                             resources_per_trial={"cpu": 1})
    e = estimate(settings, 0.3, workers=3)
    assert (e.concurrency, e.workers) == (12, 3)
    price = PriceCatalog.load().get("c5.xlarge", "us-east-1")
    assert e.cluster_usd["spot"] == pytest.approx(
        e.wall_seconds / 3600 * (price.on_demand_usd_hour + 3 * price.spot_usd_hour))
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate", "exp.yaml", "--workers",
                          "3", "--instance-type", "c5.xlarge"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "on c5.xlarge in us-east-1, 12 trials at a time" in out.stdout
    assert "cluster bill: 3 c5.xlarge workers and an on-demand c5.xlarge head" in out.stdout
    for flags, says in ((["--instance-type", "c5.xlarg"], "error: command line: "
                         "default_instance_type: no price for 'c5.xlarg'"),
                        (["--workers", "0"], "error: command line: --workers: must be a whole "
                         "number >= 1, got 0")):
        out = subprocess.run([sys.executable, "-m", "tuner.cli", "estimate", "exp.yaml", *flags],
                             capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.startswith(says), out.stderr
