"""Study integrity under real use: a second driver, a driver that stopped before Ray Tune's
first snapshot, two studies started in the same second, a relative MLflow store.

Nothing is faked except where a docstring says so: a real local Ray cluster, real Optuna
journals and MLflow sqlite stores, real `tuner` processes.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

import tuner
from tests.helpers import counting_trainable, user_env
from tuner.errors import ConfigError

SPACE = {"rate": {"type": "float", "low": 0.05, "high": 1.0, "log": True}}


def curve(config):
    state = tuner.load_state() or {"it": 0}
    while state["it"] < 4:
        state["it"] += 1
        tuner.report({"acc": 1 - math.exp(-config["rate"] * state["it"])}, state=state)


def test_a_study_stopped_before_tunes_first_snapshot_resumes_with_one_command(
        ray_cluster, study_dir, monkeypatch):
    """Faked: the driver's death before Ray Tune saved anything, by an engine that raises
    as it starts (what `kill -9` in the first seconds leaves: a record, an MLflow parent,
    no Tune state)."""
    from tuner import engine

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(engine, "run_study", dies)
        with pytest.raises(KeyboardInterrupt):
            tuner.tune(curve, SPACE, metric="acc", num_samples=3, max_t=4, name="early",
                       verbose=False)
    path = study_dir / "tuner_results" / "early"
    assert not engine.can_restore(str(path))

    result = tuner.resume(str(path), trainable=curve, verbose=False)
    assert len(result.trials) == 3
    assert set(result.trials.status) <= {"completed", "pruned"}
    client = MlflowClient(result.mlflow_uri)
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def test_resume_while_the_driver_runs_is_refused_and_the_study_is_untouched(
        ray_cluster, study_dir):
    _experiment(study_dir, ray_cluster.address, iterations=6, sleep_s=0.5, num_samples=2,
                name="busy")
    first = _tuner(study_dir, "run", "exp.yaml", "--quiet")
    path = study_dir / "tuner_results" / "busy"
    deadline = time.monotonic() + 120
    while not (path / "tuner_study.json").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.2)
    second = subprocess.run([sys.executable, "-m", "tuner.cli", "resume", str(path)],
                            cwd=study_dir, env=user_env(), capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 1
    assert f"being run by pid {first.pid}" in second.stderr.strip().splitlines()[-1]
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out[-2000:] + err[-2000:]
    result = tuner.TuneResult.load(path)
    assert list(result.trials.status) == ["completed", "completed"]


def test_two_studies_started_in_the_same_second_keep_their_own_records(ray_cluster, study_dir):
    _experiment(study_dir, ray_cluster.address, iterations=2, sleep_s=0, num_samples=3)
    runs = [_tuner(study_dir, "run", "exp.yaml", "--quiet") for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=400)
        assert run.returncode == 0, out[-2000:] + err[-2000:]
    studies = sorted(os.listdir(study_dir / "tuner_results"))
    assert len(studies) == 2, studies
    parents = set()
    for name in studies:
        result = tuner.TuneResult.load(study_dir / "tuner_results" / name)
        assert len(result.trials) == 3
        journal = optuna.load_study(
            study_name=name, storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(
                    str(study_dir / "tuner_results" / name / "optuna_journal.log"))))
        assert len(journal.trials) == 3
        client = MlflowClient(result.mlflow_uri)
        parent = client.get_run(result.parent_run_id)
        assert parent.info.status == "FINISHED"
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
        assert len(children) == 3
        parents.add(result.parent_run_id)
    assert len(parents) == 2


def test_a_relative_sqlite_store_is_recorded_absolute(ray_cluster, study_dir, tmp_path_factory):
    result = tuner.tune(curve, SPACE, metric="acc", num_samples=1, max_t=2, name="rel",
                        mlflow_uri="sqlite:///rel.db", verbose=False)
    assert result.mlflow_uri == f"sqlite:///{study_dir / 'rel.db'}"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.chdir(elsewhere)  # study_dir's monkeypatch restores the working directory
    resumed = tuner.resume(str(study_dir / "tuner_results" / "rel"), trainable=curve,
                           verbose=False)
    assert resumed.parent_run_id == result.parent_run_id
    assert not (elsewhere / "rel.db").exists()


def test_a_study_that_exists_is_not_started_twice(ray_cluster, study_dir):
    tuner.tune(curve, SPACE, metric="acc", num_samples=1, max_t=2, name="once", verbose=False)
    with pytest.raises(ConfigError, match=r"^tune\(\): name: a study named 'once' exists "
                                         r"already in .*; `tuner resume .*` continues it"):
        tuner.tune(curve, SPACE, metric="acc", num_samples=1, max_t=2, name="once",
                   verbose=False)


def test_resources_no_node_has_stop_the_study_at_once_with_what_the_nodes_have(
        ray_cluster, study_dir):
    """Refused before anything is recorded: the corrected study runs under the same name."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"^tune\(\): resources_per_trial: \{'cpu': 1, 'gpu': 1\} "
                                          r"fits no node .*GPU too large: its nodes have 1 x "
                                          r"\{CPU 2\}"):
        tuner.tune(curve, SPACE, metric="acc", num_samples=2, max_t=2, name="gpu",
                   resources_per_trial={"cpu": 1, "gpu": 1}, verbose=False)
    assert time.monotonic() - started < 60
    assert not (study_dir / "tuner_results" / "gpu").exists()
    assert not (study_dir / "mlflow.db").exists()
    result = tuner.tune(curve, SPACE, metric="acc", num_samples=1, max_t=2, name="gpu",
                        resources_per_trial={"cpu": 1}, verbose=False)
    assert len(result.trials) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_study_exits_130_and_resume_finishes_every_trial(
        ray_cluster, study_dir, sig):
    _experiment(study_dir, ray_cluster.address, iterations=8, sleep_s=0.4, num_samples=3,
                name="cut")
    driver = _tuner(study_dir, "run", "exp.yaml", "--quiet")
    path = study_dir / "tuner_results" / "cut"
    deadline = time.monotonic() + 120
    while not any(t["iterations"] >= 2 for t in _trials(path)):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.2)
    driver.send_signal(sig)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, out[-2000:] + err[-2000:]
    assert "continue it with: tuner resume" in out
    interrupted = tuner.TuneResult.load(path)
    assert interrupted.state == "interrupted"
    assert "interrupted" in set(interrupted.trials.status)

    resumed = subprocess.run([sys.executable, "-m", "tuner.cli", "resume", str(path)],
                             cwd=study_dir, env=user_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    result = tuner.TuneResult.load(path)
    assert result.state == "finished"
    assert len(result.trials) == 3
    assert set(result.trials.status) == {"completed"}
    assert (result.trials.iterations == 8).all()


def test_ctrl_c_in_a_python_script_says_how_to_resume_from_python(ray_cluster, study_dir):
    """A script calling tuner.tune(), interrupted as a user would (SIGINT to the process)."""
    (study_dir / "counting.py").write_text(counting_trainable(8, 0.4))
    (study_dir / "script.py").write_text(textwrap.dedent(f"""
        import tuner
        from counting import train

        result = tuner.tune(train, {{"q": {{"type": "float", "low": 0.1, "high": 1.0}}}},
                            metric="acc", num_samples=2, max_t=8, grace_period=8, name="py",
                            ray_address={ray_cluster.address!r})
        print("state:", result.state)
    """))
    driver = subprocess.Popen([sys.executable, "script.py"], cwd=study_dir, env=user_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = study_dir / "tuner_results" / "py"
    deadline = time.monotonic() + 120
    while not any(t["iterations"] >= 2 for t in _trials(path)):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 0, out[-2000:] + err[-2000:]
    assert (f"[tuner] study py interrupted; continue it with tuner.resume('{path}', "
            f"trainable=train)\nstate: interrupted") in out


def test_ctrl_c_while_tuner_starts_its_local_cluster_ends_the_run_with_nothing_recorded(
        study_dir):
    """Ray starts a local cluster's processes by fork; a KeyboardInterrupt raised in fork's
    callbacks was printed as "Exception ignored" and lost, and the study ran to the end.
    Real: a `tuner run` that starts its own cluster (no address, its own temp dir), SIGINT
    as soon as that cluster's session directory appears."""
    from tests.conftest import processes_of

    (study_dir / "counting.py").write_text(counting_trainable(2, 0.1))
    (study_dir / "exp.yaml").write_text("trainable: counting:train\nspace: {q: {type: float, "
                                        "low: 0.1, high: 1.0}}\nmetric: acc\nnum_samples: 2\n"
                                        "scheduler: {max_t: 2}\n")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # Ray's sockets: <= 107 bytes
    driver = subprocess.Popen([sys.executable, "-m", "tuner.cli", "run", "exp.yaml"],
                              cwd=study_dir, env=user_env(RAY_TMPDIR=str(ray_tmp),
                                                          HOME=str(study_dir)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(ray_tmp.glob("ray/session_*")):
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
            time.sleep(0.02)
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
        deadline = time.monotonic() + 30  # the cluster it started goes with it
        while processes_of(str(ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = processes_of(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not left, f"Ray processes left behind: {left}"
    assert driver.returncode == 130, out[-2000:] + err[-2000:]
    assert err.strip().splitlines()[-1] == ("interrupted before the study started; nothing "
                                            "was recorded")
    assert not (study_dir / "tuner_results").exists() or not any(
        (study_dir / "tuner_results").iterdir())


def _experiment(study_dir, address: str, iterations: int, sleep_s: float, num_samples: int,
                name: str | None = None) -> None:
    """exp.yaml in ``study_dir``: trials counting to ``iterations`` (tests.helpers), all
    run to the end (grace period = max_t), on the cluster at ``address``."""
    (study_dir / "counting.py").write_text(counting_trainable(iterations, sleep_s))
    (study_dir / "exp.yaml").write_text(textwrap.dedent(f"""
        trainable: counting:train
        space: {{q: {{type: float, low: 0.1, high: 1.0}}}}
        metric: acc
        num_samples: {num_samples}
        scheduler: {{max_t: {iterations}, grace_period: {iterations}}}
        ray_address: {address!r}
    """) + (f"name: {name}\n" if name else ""))


def _tuner(study_dir, *args: str) -> subprocess.Popen:
    """`tuner ARGS` started in ``study_dir`` as from a user's shell."""
    return subprocess.Popen([sys.executable, "-m", "tuner.cli", *args], cwd=study_dir,
                            env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _trials(path) -> list[dict]:
    import json

    try:
        return list(json.loads((path / "tuner_study.json").read_text())["trials"].values())
    except (OSError, ValueError):
        return []


def test_a_study_its_budget_stopped_goes_on_to_num_samples_when_resume_raises_it(
        ray_cluster, study_dir):
    """`tuner run` with a budget one result spends, then `tuner resume --budget-usd 1`
    two seconds later on the same cluster (a cloud cluster that outlived the driver).
    The trials cut at the cap stay stopped; new ones run until the study has num_samples;
    Optuna is told how every trial ended; the two seconds between the drivers are not on
    the bill. Faked: nothing (the nodes are unlabelled, priced as the default type)."""
    _experiment(study_dir, ray_cluster.address, iterations=3, sleep_s=0.2, num_samples=4,
                name="capped")
    with open(study_dir / "exp.yaml", "a", encoding="utf-8") as f:
        f.write("budget_usd: 0.0000001\n")
    first = subprocess.run([sys.executable, "-m", "tuner.cli", "run", "exp.yaml", "--quiet"],
                           cwd=study_dir, env=user_env(), capture_output=True, text=True,
                           timeout=300)
    first_ended = time.time()
    path = study_dir / "tuner_results" / "capped"
    capped = tuner.TuneResult.load(path)
    assert capped.stop_reason == "budget", first.stdout[-2000:] + first.stderr[-2000:]
    cut = set(capped.trials.trial_id[capped.trials.status == "stopped"])
    time.sleep(2.0)

    resume_started = time.time()
    resumed = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "resume", str(path), "--budget-usd", "1"],
        cwd=study_dir, env=user_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    result = tuner.TuneResult.load(path)
    assert result.state == "finished" and result.stop_reason is None
    assert len(result.trials) == 4
    assert set(result.trials.trial_id[result.trials.status == "stopped"]) == cut
    assert set(result.trials.status) - {"stopped"} == {"completed"}

    study = optuna.load_study(study_name="capped", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path / "optuna_journal.log"))))
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.WAITING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4 - len(cut)
    # the configurations the budget kept from being measured were the first run after it
    never = [t.params for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    ran = [t.params for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(params in ran for params in never), (never, ran)
    parent = MlflowClient(result.mlflow_uri).get_run(result.parent_run_id)
    assert parent.data.metrics["tuner.budget_used_pct"] == pytest.approx(
        100 * result.cost["cluster_usd"], rel=1e-6)  # of $1: the figure, not the last alert's
    assert parent.data.tags["tuner.budget_usd"] == "1"  # the raised cap; the param stays
    assert parent.data.tags["tuner.stop_reason"] == ""  # it went on past the first cap

    import json

    nodes = json.loads((path / "tuner_study.json").read_text())["meter"]["nodes"]
    for node in nodes.values():
        for up, down in [*node["earlier"], (node["up"], node["down"])]:
            assert down <= first_ended or up >= resume_started, (up, down)
