"""The study record is typed and versioned: what a study writes reads back the same, an
older record (no `schema`) still loads, and one this version cannot read is refused with a
line naming the file, the key and the fix."""

from __future__ import annotations

import json

import pytest

from tuner.config import StudySettings
from tuner.errors import ConfigError
from tuner.record import (
    RECORD_FILE,
    SCHEMA,
    StudyRecord,
    StudyState,
    TrialEntry,
    TrialStatus,
)


def _record(tmp_path) -> StudyRecord:
    record = StudyRecord.create(
        str(tmp_path), name="s", metric="acc", mode="max", num_samples=2, mlflow_uri="sqlite:///x",
        mlflow_experiment="s", parent_run_id="p", settings={"metric": "acc", "seed": 7,
                                                           "budget_alerts": [50, 100]})
    record.trials["t1"] = TrialEntry("t1", TrialStatus.PRUNED, {"lr": 0.1}, iterations=3,
                                     metric=0.5, restarted_at=[2])
    record.state = StudyState.INTERRUPTED
    record.save()
    return record


def test_a_record_reads_back_as_it_was_written(tmp_path):
    written = _record(tmp_path)
    read = StudyRecord.load(str(tmp_path))
    assert read == written
    assert read.trials["t1"].status is TrialStatus.PRUNED and read.state is StudyState.INTERRUPTED
    on_disk = json.loads((tmp_path / RECORD_FILE).read_text())
    assert on_disk["schema"] == SCHEMA and on_disk["trials"]["t1"]["status"] == "pruned"


def test_resume_rebuilds_the_settings_from_the_record(tmp_path):
    settings = _record(tmp_path).study_settings()
    assert isinstance(settings, StudySettings)
    assert (settings.seed, settings.budget_alerts, settings.region) == (7, (50, 100), "us-east-1")


def test_a_record_from_before_schemas_loads(tmp_path):
    _record(tmp_path)
    data = json.loads((tmp_path / RECORD_FILE).read_text())
    del data["schema"], data["trials"]["t1"]["restarting"]
    (tmp_path / RECORD_FILE).write_text(json.dumps(data))
    assert StudyRecord.load(str(tmp_path)).trials["t1"].restarting is False


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(schema=SCHEMA + 1), f"schema: is {SCHEMA + 1}, newer than this tuner"),
    (lambda d: d["trials"]["t1"].update(status="exploded"), "'exploded' is not a valid TrialStatus"),
    (lambda d: d.update(state="paused"), "'paused' is not a valid StudyState"),
    (lambda d: d.pop("num_samples"), "num_samples"),
    (lambda d: d.update(parent_run_id=None), "parent_run_id: missing or not a str"),
])
def test_a_record_this_version_cannot_read_is_refused_in_one_line(tmp_path, change, message):
    _record(tmp_path)
    data = json.loads((tmp_path / RECORD_FILE).read_text())
    change(data)
    (tmp_path / RECORD_FILE).write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        StudyRecord.load(str(tmp_path))
    assert str(info.value).startswith(str(tmp_path / RECORD_FILE))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_only_running_and_interrupted_trials_are_unfinished():
    unfinished = {s for s in TrialStatus if not TrialEntry("t", s).final}
    assert unfinished == {TrialStatus.RUNNING, TrialStatus.INTERRUPTED}
