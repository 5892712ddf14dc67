"""The driver is SIGKILLed mid-study; `tuner resume` finishes the same study.

Real processes: a Ray cluster owned by the test session, a `tuner run` driver in its
own process group (killed with SIGKILL), then `tuner resume` in another process.
Nothing is faked; the trainable is a slow synthetic curve that logs each start.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import optuna
from mlflow.tracking import MlflowClient

from tests.helpers import user_env

TRAINABLE = '''
import math, os, time
from ray import tune
import tuner

def train(config):
    state = tuner.load_state() or {"it": 0}
    with open(os.path.join(config["log_dir"], "starts.log"), "a") as f:
        f.write(f"{tune.get_context().get_trial_id()} {state['it']}\\n")
    while state["it"] < 6:
        time.sleep(0.4)
        state["it"] += 1
        tuner.report({"acc": config["ceiling"] * (1 - math.exp(-config["rate"] * state["it"]))},
                     state=state)
'''


def _run_and_kill(ray_cluster, tmp_path, samples=8):
    """`tuner run` of a study of ``samples`` trials, SIGKILLed once Tune saved a state with
    >= 2 trials ended; returns the command line, its environment, the study dir and those
    trials."""
    (tmp_path / "slowtrain.py").write_text(TRAINABLE)
    (tmp_path / "exp.yaml").write_text(textwrap.dedent(f"""
        trainable: slowtrain:train
        space:
          rate: {{type: float, low: 0.05, high: 2.0, log: true}}
          ceiling: {{type: float, low: 0.5, high: 1.0}}
          log_dir: {str(tmp_path)!r}
        metric: acc
        num_samples: {samples}
        scheduler: {{max_t: 6, grace_period: 2, reduction_factor: 2}}
        name: killed
        ray_address: {ray_cluster.address!r}
    """))
    env = user_env()
    cli = [sys.executable, "-m", "tuner.cli"]
    study = tmp_path / "tuner_results" / "killed"
    driver = subprocess.Popen([*cli, "run", "exp.yaml"], cwd=tmp_path, env=env,
                              start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    finished_at_kill = _wait_for_finished_trials_in_a_snapshot(study, 2, samples, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    return cli, env, study, finished_at_kill


def test_driver_killed_then_resumed_finishes_without_rerunning(ray_cluster, tmp_path):
    cli, env, study, finished_at_kill = _run_and_kill(ray_cluster, tmp_path)

    before = json.loads((study / "tuner_study.json").read_text())
    report = subprocess.run([*cli, "report", str(study)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert before["state"] == "running" and report.returncode == 0, report.stderr
    assert re.search(r"did not finish( \(\d+ of its \d+ trials not started\))?; "
                     rf"continue it with: tuner resume {re.escape(str(study))}\n", report.stdout)
    statuses = [line.split()[1] for line in report.stdout.splitlines()[1:] if line.split()[:1]
                and line.split()[0] in before["trials"]]
    assert statuses and "running" not in statuses  # its driver is dead: none runs
    resumed = subprocess.run([*cli, "resume", str(study)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    after = json.loads((study / "tuner_study.json").read_text())
    assert after["state"] == "finished"
    assert after["parent_run_id"] == before["parent_run_id"]
    statuses = {t["status"] for t in after["trials"].values()}
    assert len(after["trials"]) == 8 and statuses <= {"completed", "pruned"}
    for trial_id, status in finished_at_kill.items():
        assert after["trials"][trial_id]["status"] == status

    starts = [line.split() for line in (tmp_path / "starts.log").read_text().splitlines()]
    for trial_id in finished_at_kill:  # a finished trial is never started again
        assert [s for s in starts if s[0] == trial_id] == [[trial_id, "0"]]
    interrupted = [t for t in before["trials"].values() if t["status"] == "running"]
    for t in interrupted:  # a running one restarts from its checkpoint, not from 0
        restarts = [int(s[1]) for s in starts if s[0] == t["trial_id"]][1:]
        if t["iterations"] and restarts:
            assert restarts[0] >= 1

    client = MlflowClient(after["mlflow_uri"])
    parent = client.get_run(after["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{after['parent_run_id']}'")
    assert sorted(r.info.run_id for r in children) == sorted(
        t["mlflow_run_id"] for t in after["trials"].values())
    for run in children:  # what the kill cut from the writer's last batch, resume wrote
        assert {"acc", "tuner.cost_usd"} <= set(run.data.metrics), run.data.tags
        assert run.info.status == "FINISHED"
    parents = client.search_runs([parent.info.experiment_id], "tags.`tuner.kind` = 'study'")
    assert len(parents) == 1

    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(study / "optuna_journal.log")))
    trials = optuna.load_study(study_name="killed", storage=journal).trials
    finished = [t for t in trials if t.state.is_finished()]
    assert len([t for t in finished if t.state != optuna.trial.TrialState.FAIL]) == 8
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


def test_a_snapshot_cut_between_its_files_still_reaches_num_samples(ray_cluster, tmp_path):
    """Tune keeps its trial list and its search generator's count of created trials in two
    files, uploaded separately to remote storage; a driver killed between them can
    leave a count newer than the list. Faked here by raising the saved count by one after
    the kill (the files are Tune's own, edited as that cut would leave them): the resumed
    study must still run all 16 trials and finish (16: more than the cluster starts at once,
    so some are left to create at the kill)."""
    import ray.cloudpickle as cloudpickle

    cli, env, study, _ = _run_and_kill(ray_cluster, tmp_path, samples=16)
    newest = max(glob.glob(str(study / "search_gen_state-*.json")))
    with open(newest, "rb") as f:
        count = cloudpickle.load(f)
    assert count["counter"] < 16  # trials left to create, or nothing would be lost
    count["counter"] += 1
    with open(newest, "wb") as f:
        cloudpickle.dump(count, f)

    resumed = subprocess.run([*cli, "resume", str(study)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = json.loads((study / "tuner_study.json").read_text())
    assert after["state"] == "finished" and len(after["trials"]) == 16


def _wait_for_finished_trials_in_a_snapshot(study, at_least, samples, proc, timeout=180):
    """Wait until >= `at_least` trials ended and Tune saved its state after they did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            record = json.loads((study / "tuner_study.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.2)
            continue
        done = {k: t for k, t in record["trials"].items() if t["status"] != "running"}
        snapshots = glob.glob(str(study / "experiment_state-*.json"))
        if len(done) >= at_least and snapshots and len(done) < samples:
            last_end = max(t["ended_at"] for t in done.values())
            if max(os.path.getmtime(p) for p in snapshots) > last_end + 0.5:
                return {k: t["status"] for k, t in done.items()}
        time.sleep(0.2)
    raise AssertionError("the study did not reach the state to kill it in")
