"""Honest results: what a study's record says is what `tuner run`, `resume` and `report` print
and what their exit codes mean. Records are written to a tmp dir as a study writes them; no
Ray, no MLflow store (the CLI's `run`/`resume` are given a study read back from its record)."""

from __future__ import annotations

import math
import os

import pytest

from tuner.api import TuneResult
from tuner.errors import StudyError
from tuner.lock import StudyLock
from tuner.record import StudyRecord, TrialEntry, TrialStatus
from tuner.study import check_metric


def write_study(tmp_path, trials, mode="max", **fields):
    """A study record with ``trials``: id -> (status, final acc, iterations, error); its
    driver done (finished, unless ``state`` says otherwise)."""
    fields.setdefault("state", "finished")
    fields.setdefault("trainable", "examples.digits_mlp:train")
    record = StudyRecord.create(
        str(tmp_path / "study"), name="study", metric="acc", mode=mode, num_samples=len(trials),
        mlflow_uri="http://alice:s3cret@mlflow.example:5000", mlflow_experiment="study",
        parent_run_id="p1", settings={}, **fields)
    for trial_id, (status, acc, iterations, error) in trials.items():
        record.trials[trial_id] = TrialEntry(trial_id, TrialStatus(status), metric=acc,
                                             iterations=iterations, error=error,
                                             config={"lr": 0.1})
    record.save()
    return record.path


def cli(capsys, monkeypatch, command, path):
    """`tuner <command> <path>`; `run` and `resume` are given the study at ``path`` (api.run
    and api.resume faked: they read its record back instead of running trials)."""
    from tuner import api
    from tuner.cli import main

    monkeypatch.setattr(api, "resume", lambda p, **_: TuneResult.load(p))
    monkeypatch.setattr(api, "run", lambda *a, **k: TuneResult.load(path))
    argv = [command, path]
    if command == "run":
        folder = os.path.dirname(path)
        with open(os.path.join(folder, "space.yaml"), "w") as f:
            f.write("lr: {type: float, low: 0.01, high: 1}\n")
        with open(os.path.join(folder, "stand_in.py"), "w") as f:
            f.write("def train(config):\n    pass\n")
        with open(os.path.join(folder, "exp.yaml"), "w") as f:
            f.write("trainable: stand_in:train\nspace: space.yaml\nmetric: acc\n")
        argv = [command, os.path.join(folder, "exp.yaml")]
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("mode", ["max", "min"])
def test_nan_and_infinity_are_never_the_best(tmp_path, mode):
    path = write_study(tmp_path, {
        "t1": ("completed", math.nan, 3, None), "t2": ("completed", math.inf, 3, None),
        "t3": ("completed", -math.inf, 3, None), "t4": ("completed", 0.5, 3, None)}, mode=mode)
    result = TuneResult.load(path)
    assert (result.best_trial_id, result.best_metric) == ("t4", 0.5)
    record = StudyRecord.load(path)
    assert not record.improves(math.nan, None) and not record.improves(math.inf, 0.5)
    assert record.improves(0.1 if mode == "min" else 0.9, math.nan)


def test_the_table_counts_trials_that_ended_non_finite_and_ranks_them_last(
        tmp_path, capsys, monkeypatch):
    path = write_study(tmp_path, {"t1": ("completed", math.nan, 3, None),
                                  "t2": ("completed", math.inf, 3, None),
                                  "t3": ("completed", 0.5, 3, None)})
    code, out, _ = cli(capsys, monkeypatch, "report", path)
    assert code == 0
    assert out.splitlines()[1].split()[0] == "t3"  # the finite one first
    assert ("2 trials ran iterations without a finite acc (NaN, infinite or not reported); "
            "they are never the best") in out


@pytest.mark.parametrize("trials,why", [
    ({"t1": ("failed", None, 0, "ValueError: boom"), "t2": ("failed", None, 2, "OSError: x")},
     "No best trial: every trial failed (2); each one's error is in the table and on its "
     "MLflow run (tag tuner.error)"),
    ({"t1": ("failed", 0.9, 3, "ValueError: boom"), "t2": ("failed", 0.4, 2, "OSError: x")},
     "No best trial: every trial failed (2); each one's error is in the table and on its "
     "MLflow run (tag tuner.error)"),
    ({"t1": ("completed", None, 0, None), "t2": ("stopped", None, 0, None)},
     "No best trial: no trial reported acc"),
    ({"t1": ("completed", math.nan, 3, None), "t2": ("pruned", math.nan, 1, None)},
     "No best trial: every value of acc was NaN or infinite"),
    ({"t1": ("failed", None, 0, "ValueError: boom"), "t2": ("completed", math.nan, 3, None),
      "t3": ("stopped", None, 0, None)},
     "No best trial: no trial reported a finite acc: 1 failed, 1 reported nothing, 1 reported "
     "only NaN or infinite values"),
])
@pytest.mark.parametrize("command", ["run", "resume"])
def test_run_and_resume_exit_1_when_no_trial_has_a_usable_metric(
        tmp_path, capsys, monkeypatch, trials, why, command):
    path = write_study(tmp_path, trials)
    code, out, _ = cli(capsys, monkeypatch, command, path)
    assert code == 1
    assert why in out and "Best acc" not in out


def test_a_study_with_a_best_trial_exits_0_and_never_prints_the_store_password(
        tmp_path, capsys, monkeypatch):
    path = write_study(tmp_path, {"t1": ("completed", 0.9, 3, None),
                                  "t2": ("failed", None, 1, "ValueError: boom")})
    code, out, _ = cli(capsys, monkeypatch, "resume", path)
    assert code == 0
    assert "Best acc: 0.9 (trial t1, completed, 3 iterations)" in out
    assert "s3cret" not in out and "http://alice:***@mlflow.example:5000" in out


def test_the_table_shows_each_trials_error_first_line_cut_to_fit(tmp_path, capsys, monkeypatch):
    long = "RuntimeError: " + "x" * 200 + "\nTraceback line two"
    path = write_study(tmp_path, {"t1": ("failed", None, 1, "ValueError: boom\nsecond line"),
                                  "t2": ("failed", None, 1, long),
                                  "t3": ("completed", 0.9, 3, None)})
    _, out, _ = cli(capsys, monkeypatch, "report", path)
    header, *rows = out.splitlines()[:4]
    assert header.split()[-1] == "error"
    by_trial = {row.split()[0]: row for row in rows}
    assert by_trial["t1"].endswith("ValueError: boom")
    assert by_trial["t2"].endswith("RuntimeError: " + "x" * 43 + "...")
    assert by_trial["t3"].endswith("-")
    assert "second line" not in out and "Traceback" not in out


def test_a_study_stopped_by_its_budget_is_reported_finished(tmp_path, capsys, monkeypatch):
    path = write_study(tmp_path, {"t1": ("completed", 0.9, 3, None),
                                  "t2": ("stopped", 0.4, 1, None)}, stop_reason="budget")
    for command in ("report", "run", "resume"):
        code, out, _ = cli(capsys, monkeypatch, command, path)
        assert code == 0
        assert "The study finished: budget spent (stop reason budget" in out
        assert "did not finish" not in out and "tuner resume" not in out


def test_raising_the_budget_of_a_study_with_every_trial_started_says_nothing_would_run(
        tmp_path):
    """No Ray: refused before the cluster is joined, and the record is left as it was."""
    from tuner.api import resume

    path = write_study(tmp_path, {"t1": ("completed", 0.9, 3, None),
                                  "t2": ("stopped", 0.4, 1, None),
                                  "t3": ("stopped", None, 0, None)},
                       stop_reason="budget")
    record = StudyRecord.load(path)
    record.settings.update(metric="acc", budget_usd=0.001)
    record.save()
    before = open(os.path.join(path, "tuner_study.json")).read()
    with pytest.raises(StudyError, match=r"all 3 have started \(the ones stopped at the budget "
                                         r"stay stopped; 1 never reported\), so it would run "
                                         r"nothing; for more trials, start a new study"):
        resume(path, budget_usd=1.0, verbose=False)
    assert open(os.path.join(path, "tuner_study.json")).read() == before


def test_a_budget_spent_before_any_iteration_says_the_start_spent_it(tmp_path, capsys,
                                                                       monkeypatch):
    for trials in ({"t1": ("stopped", None, 0, None)}, {}):
        path = write_study(tmp_path / str(len(trials)), trials, stop_reason="budget")
        _, out, _ = cli(capsys, monkeypatch, "report", path)
        assert "The study finished: budget spent" in out
        assert "No trial finished an iteration within it: the bill from Ray Tune's start" in out


def test_an_interrupted_study_says_how_to_continue_and_exits_130(tmp_path, capsys, monkeypatch):
    path = write_study(tmp_path, {"t1": ("completed", 0.9, 3, None),
                                  "t2": ("interrupted", 0.4, 1, None)}, state="interrupted")
    code, out, _ = cli(capsys, monkeypatch, "report", path)
    assert code == 0  # a report of it is not itself interrupted
    assert f"The study did not finish; continue it with: tuner resume {path}" in out
    for command in ("run", "resume"):
        code, out, _ = cli(capsys, monkeypatch, command, path)
        assert code == 130
        assert "continue it with: tuner resume" in out


def test_an_interrupted_study_counts_the_trials_it_had_not_started(tmp_path, capsys,
                                                                    monkeypatch):
    path = write_study(tmp_path, {"t1": ("completed", 0.9, 3, None),
                                  "t2": ("interrupted", 0.4, 1, None)}, state="interrupted")
    record = StudyRecord.load(path)
    record.num_samples = 6
    record.save()
    _, out, _ = cli(capsys, monkeypatch, "report", path)
    assert (f"The study did not finish (4 of its 6 trials not started); continue it with: "
            f"tuner resume {path}") in out


def test_pruned_trials_listed_above_the_best_are_said_to_have_stopped_early(tmp_path, capsys,
                                                                          monkeypatch):
    """The table ranks every trial by its last value; the best is a completed trial's."""
    path = write_study(tmp_path, {"t1": ("completed", 0.90, 30, None),
                                  "t2": ("pruned", 0.95, 6, None),
                                  "t3": ("pruned", 0.93, 2, None),
                                  "t4": ("pruned", 0.50, 18, None)})
    _, out, _ = cli(capsys, monkeypatch, "report", path)
    assert [row.split()[0] for row in out.splitlines()[1:5]] == ["t2", "t3", "t1", "t4"]
    assert ("Best acc: 0.9 (trial t1, completed, 30 iterations)\n  (2 trials listed above it "
            "were stopped early, at 6 iterations at most: a value measured at fewer iterations "
            "does not count as best)\nBest config: {'lr': 0.1}") in out


def test_the_report_says_when_the_best_value_sits_at_the_end_of_its_searched_range(
        tmp_path, capsys, monkeypatch):
    """The best trial's lr (0.1) is the top of 1e-3..0.1: a better one may lie beyond; a
    study whose best is inside every range gets no such line."""
    space = {"lr": {"type": "float", "low": 1.0e-3, "high": 0.1, "log": True}}
    path = write_study(tmp_path, {"t1": ("completed", 0.9, 30, None)}, space=space)
    _, out, _ = cli(capsys, monkeypatch, "report", path)
    assert ("Best config: {'lr': 0.1}\n  at the end of the searched range: lr=0.1 (high end of "
            "0.001..0.1); better values may lie beyond it: widen the range in the search space "
            "where the model allows") in out
    inside = write_study(tmp_path / "inside", {"t1": ("completed", 0.9, 30, None)},
                         space={"lr": {**space["lr"], "high": 1.0}})
    _, out, _ = cli(capsys, monkeypatch, "report", inside)
    assert "Best config: {'lr': 0.1}" in out and "searched range" not in out


def test_a_best_trial_that_did_not_complete_gets_no_advice_to_widen_its_range(
        tmp_path, capsys, monkeypatch):
    """An interrupted study's best is a trial measured part of the way: its lr at the end
    of the range is no evidence yet that the range is too narrow."""
    space = {"lr": {"type": "float", "low": 1.0e-3, "high": 0.1, "log": True}}
    path = write_study(tmp_path, {"t1": ("interrupted", 0.9, 3, None)}, space=space,
                       state="interrupted")
    _, out, _ = cli(capsys, monkeypatch, "report", path)
    assert "Best acc: 0.9 (trial t1, interrupted, 3 iterations)\nBest config: {'lr': 0.1}\n" in out
    assert "searched range" not in out


def test_an_interrupted_study_of_a_main_module_function_says_to_resume_from_python(
        tmp_path, capsys, monkeypatch):
    """A trainable defined in ``__main__`` has no importable name on record: `tuner resume`
    would refuse it, so the report points at ``tuner.resume(..., trainable=...)``."""
    path = write_study(tmp_path, {"t1": ("interrupted", 0.4, 1, None)}, state="interrupted",
                       trainable=None)
    _, out, _ = cli(capsys, monkeypatch, "report", path)
    assert f"tuner.resume({path!r}, trainable=your_function)" in out
    assert "tuner resume " not in out


def test_a_study_whose_driver_was_killed_reads_as_interrupted_not_running(tmp_path):
    """A killed driver leaves its study on record as running; the kernel freed its lock."""
    path = write_study(tmp_path, {"t1": ("completed", 0.9, 3, None),
                                  "t2": ("running", 0.4, 1, None)}, state="running")
    with StudyLock(path):  # a live driver: as on record
        result = TuneResult.load(path)
        assert result.state == "running" and list(result.trials["status"]) == ["completed", "running"]
        assert "The study is running" in result.table() and "tuner resume" not in result.table()
    result = TuneResult.load(path)
    assert result.state == "interrupted"
    assert list(result.trials["status"]) == ["completed", "interrupted"]
    assert f"continue it with: tuner resume {path}" in result.table()
    assert StudyRecord.load(path).state.value == "running"  # a reading, not a change


@pytest.mark.parametrize("value", ["0.93", True, None, [0.9]])
def test_a_metric_that_is_not_a_number_stops_the_study_in_one_line(value):
    with pytest.raises(StudyError) as info:
        check_metric("t_0001", "val_accuracy", {"val_accuracy": value, "training_iteration": 1})
    message = str(info.value)
    assert message.startswith(f"trial t_0001 reported val_accuracy={value!r} (a "
                              f"{type(value).__name__}); report a number")
    assert "\n" not in message and "tuner resume" not in message


def test_numbers_of_any_kind_pass_the_metric_check():
    import numpy as np

    for value in (1, 0.5, math.nan, np.float32(0.5), np.int64(3)):
        check_metric("t", "acc", {"acc": value})
    check_metric("t", "acc", {"loss": "x"})  # not the study metric: not ours to judge


def test_resuming_a_study_stopped_by_its_budget_says_how_to_raise_it(tmp_path, capsys):
    from tuner.cli import main

    path = write_study(tmp_path, {"t1": ("completed", 0.9, 3, None),
                                  "t2": ("stopped", 0.4, 1, None)}, stop_reason="budget",
                       state="finished", cost={"cluster_usd": 0.0102, "cost_usd": 0.004})
    record = StudyRecord.load(path)
    record.settings.update(metric="acc", budget_usd=0.01)
    record.save()
    assert main(["resume", path]) == 1
    err = capsys.readouterr().err
    assert "finished at its budget (cluster $0.0102 of $0.01)" in err
    assert f"tuner resume {path} --budget-usd <more>" in err
    assert main(["resume", path, "--budget-usd", "-1"]) == 2
    assert "command line: budget_usd: must be a finite number of dollars > 0" in \
        capsys.readouterr().err
    assert StudyRecord.load(path).settings["budget_usd"] == 0.01  # a refused raise changes nothing


def test_the_report_says_when_the_cluster_bill_is_a_share_of_a_shared_cluster(tmp_path):
    from tuner.summary import cost_lines

    cost = {"cost_usd": 0.01, "on_demand_equiv_usd": 0.02, "savings_pct": 50.0, "wasted_usd": 0.0,
            "cluster_usd": 0.03, "cluster_on_demand_usd": 0.05, "cluster_savings_pct": 40.0,
            "idle_usd": 0.02, "shared_with_studies": 0.0}
    alone = cost_lines(TuneResult.load(write_study(tmp_path / "a", {}, cost=cost)))
    shared = cost_lines(TuneResult.load(write_study(
        tmp_path / "b", {}, cost={**cost, "shared_with_studies": 2.0})))
    assert not any("shared" in line for line in alone)
    assert any("share of a cluster shared with 2 other studies" in line for line in shared)
    assert [line for line in shared if "Cluster bill" in line] == [
        line for line in alone if "Cluster bill" in line]


def test_the_trials_frame_has_a_column_per_parameter_as_ray_tune_names_them(tmp_path):
    """`result.trials["config/lr"]`, as in Ray Tune's result frames; a parameter a trial did
    not draw (a conditional one) is missing there, not an error."""
    space = {"lr": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
             "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"lr": 0.1}}}
    path = write_study(tmp_path, {"t1": ("completed", 0.9, 30, None)}, space=space)
    frame = TuneResult.load(path).trials
    assert frame["config/lr"].tolist() == [0.1]
    assert frame["config/momentum"].isna().all()
    assert frame["config"].tolist() == [{"lr": 0.1}]
