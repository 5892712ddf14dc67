"""The shipped example, run as a user runs it, on the test session's Ray cluster.

`python examples/digits_mlp.py` joins the cluster through RAY_ADDRESS (as under
`ray job submit`), trains real scikit-learn MLPs on the bundled digits data, and
writes to a local sqlite MLflow store; `tuner report` then reads the study back.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mlflow.tracking import MlflowClient

import tuner
from tests.helpers import user_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_digits_example_runs_and_report_agrees(ray_cluster, tmp_path):
    env = user_env(RAY_ADDRESS=ray_cluster.address)
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "digits_mlp.py"), "--num-samples", "6",
         "--max-epochs", "6", "--name", "digits"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Best val_accuracy:" in out.stdout

    result = tuner.TuneResult.load(tmp_path / "tuner_results" / "digits")
    assert len(result.trials) == 6
    assert result.best_metric > 0.5  # a real model learned the digits
    report = subprocess.run([sys.executable, "-m", "tuner.cli", "report", result.path],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    for _, row in result.trials.iterrows():
        line = next(ln for ln in report.stdout.splitlines() if ln.startswith(row.trial_id))
        assert f"{row.val_accuracy:.4f}" in line and row.status in line

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["tuner.best_trial_id"] == result.best_trial_id
