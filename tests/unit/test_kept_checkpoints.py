"""A resumed trial's kept checkpoints that its killed driver deleted after the snapshot are
forgotten before Tune registers the next one, so Tune's retention does not delete a missing
path (Ray 2.60 raises FileNotFoundError there: "Error handling checkpoint", and the trial's
checkpoint index stops advancing). Real: Ray's checkpoint manager and its retention."""

from __future__ import annotations

from types import SimpleNamespace

from ray.train import CheckpointConfig
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune import Checkpoint

from tuner import ray_compat
from tuner.engine.callbacks import _CHECKED, _StudyCallback


def _result(tmp_path, index, exists=True):
    path = tmp_path / f"checkpoint_{index:06d}"
    if exists:
        path.mkdir()
    return _TrainingResult(Checkpoint(str(path)), {"training_iteration": index + 1})


def test_deleted_kept_checkpoints_are_forgotten_and_retention_then_works(tmp_path):
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
    manager._checkpoint_results = [_result(tmp_path, 6, exists=False), _result(tmp_path, 7)]
    trial = SimpleNamespace(trial_id="t1", run_metadata=SimpleNamespace(checkpoint_manager=manager))

    callback = _StudyCallback(str(tmp_path), asha=None, verbose=False)  # type: ignore[arg-type]
    _CHECKED.pop(str(tmp_path), None)
    callback.on_checkpoint(0, [], trial, None)
    assert [r.checkpoint.path[-2:] for r in manager._checkpoint_results] == ["07"]
    assert _CHECKED[str(tmp_path)] == {"t1"}
    for index in (8, 9):  # Ray's own retention: deletes checkpoint 7 and raises nothing
        manager.register_checkpoint(_result(tmp_path, index))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000008", "checkpoint_000009"]
    _CHECKED.pop(str(tmp_path), None)


def test_nothing_is_forgotten_when_every_kept_checkpoint_exists(tmp_path):
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
    manager._checkpoint_results = kept = [_result(tmp_path, 1), _result(tmp_path, 2)]
    trial = SimpleNamespace(run_metadata=SimpleNamespace(checkpoint_manager=manager))
    assert ray_compat.forget_deleted_checkpoints(trial) == []
    assert manager._checkpoint_results == kept
