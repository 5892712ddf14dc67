"""The `tuner` command on bad input: one line on stderr, exit code 2, no traceback, no state.

Runs the real console script in a subprocess; no Ray cluster is started.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tuner(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_validate_accepts_shipped_files(tmp_path):
    for rel in ("examples/digits_mlp.yaml", "search_spaces/mlp.yaml"):
        out = tuner("validate", os.path.join(ROOT, rel), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "valid" in out.stdout


@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_space_exits_2_with_one_line(tmp_path, command):
    (tmp_path / "space.yaml").write_text("lr: {type: float, low: 0, high: 1, log: true}\n")
    (tmp_path / "mytrain.py").write_text("def train(config):\n    pass\n")
    (tmp_path / "exp.yaml").write_text("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n")
    out = tuner(command, "exp.yaml", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: space.yaml: lr: log=true needs low > 0, got low=0"
    assert not (tmp_path / "tuner_results").exists() and not (tmp_path / "mlflow.db").exists()


def test_unimportable_trainable_exits_2(tmp_path):
    (tmp_path / "space.yaml").write_text("lr: {type: float, low: 0.1, high: 1}\n")
    (tmp_path / "exp.yaml").write_text("trainable: missing_mod:train\nspace: space.yaml\nmetric: acc\n")
    out = tuner("run", "exp.yaml", cwd=tmp_path)
    assert out.returncode == 2
    assert "exp.yaml: trainable: cannot import module 'missing_mod'" in out.stderr
    assert "Traceback" not in out.stderr


def test_report_and_resume_on_a_directory_without_a_study(tmp_path):
    for command in ("report", "resume"):
        out = tuner(command, str(tmp_path), cwd=tmp_path)
        assert out.returncode == 1
        assert "no study here" in out.stderr and "Traceback" not in out.stderr
