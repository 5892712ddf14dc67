"""A trial resumes from a checkpoint that exists, even when the experiment snapshot names
one that Tune has since deleted (a driver killed between a snapshot and the deletion:
Ray then fails the trial on every retry with "does not exist on storage anymore").

Real: Ray's function trainable class with our mixin, its ``restore``, Ray's Checkpoint and
pyarrow's local filesystem (the calls Tune makes on S3 too). Faked: nothing runs the
trainable; the test hands ``restore`` what Tune's controller would.
"""

from __future__ import annotations

import pickle

import pyarrow.fs
import pytest
from ray.train._internal.session import _TrainingResult
from ray.tune import Checkpoint
from ray.tune.trainable.function_trainable import FunctionTrainable, wrap_function

from tuner.engine import STATE_FILE, trial


def _trial_dir(tmp_path, *iterations, state_file=True):
    directory = tmp_path / "trial_0001"
    directory.mkdir()
    for it in iterations:
        ckpt = directory / f"checkpoint_{it:06d}"
        ckpt.mkdir()
        if state_file:
            (ckpt / STATE_FILE).write_bytes(pickle.dumps({"iteration": it, "state": {"it": it}}))
    return directory


@pytest.fixture
def restore(monkeypatch):
    """``restore`` as Tune's controller calls it with the snapshot's latest checkpoint;
    returns what reached Ray's own restore (which would fail on a missing checkpoint)."""
    seen: list = []
    monkeypatch.setattr(FunctionTrainable, "restore", lambda self, result: seen.append(result), raising=False)
    cls = wrap_function(trial.with_trial_mixin(lambda config: None))

    def run(directory, iteration):
        path = directory / f"checkpoint_{iteration:06d}"
        cls.__new__(cls).restore(_TrainingResult(Checkpoint(str(path)), {trial.ITERATION: iteration}))
        return seen
    return run


def test_a_checkpoint_that_exists_is_the_one_restored(tmp_path, restore):
    (result,) = restore(_trial_dir(tmp_path, 4, 5), 4)
    assert result.checkpoint.path.endswith("checkpoint_000004") and result.metrics[trial.ITERATION] == 4


def test_a_deleted_checkpoint_is_replaced_by_the_newest_with_its_iteration(tmp_path, restore, capsys):
    (result,) = restore(_trial_dir(tmp_path, 5, 6), 4)  # Tune kept 2; the snapshot names 4
    assert result.checkpoint.path.endswith("checkpoint_000006") and result.metrics[trial.ITERATION] == 6
    assert "checkpoint_000004 is gone" in capsys.readouterr().err


def test_without_a_checkpoint_tuner_wrote_the_trial_starts_over(tmp_path, restore, capsys):
    assert restore(_trial_dir(tmp_path, 5, 6, state_file=False), 4) == []
    assert "starts over" in capsys.readouterr().err


@pytest.mark.parametrize("iterations", [(9, 10), (10,)])
def test_the_newest_is_chosen_by_number(tmp_path, iterations):
    directory = _trial_dir(tmp_path, *iterations)
    (directory / "not_a_checkpoint_99").mkdir()
    found = trial.existing_checkpoint(pyarrow.fs.LocalFileSystem(), str(directory / "checkpoint_000003"))
    assert found is not None and found[0].path.endswith("checkpoint_000010") and found[1] == 10
