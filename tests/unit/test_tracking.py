"""The MLflow edge: trial runs are queued and written by one background thread.

Real MLflow on a local sqlite store, no Ray; where a store must fail or hang, the test
says what it fakes.
"""

from __future__ import annotations

import base64
import http.server
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from tuner.errors import StudyError
from tuner.record import StudyRecord
from tuner.study import StudyBook
from tuner.tracking import _TRACKERS, Tracker, flush_all, masked, probe


def _tracker(tmp_path, batch_s=0.05):
    return Tracker(f"sqlite:///{tmp_path}/mlflow.db", "specs", batch_s=batch_s)


def test_a_trial_run_is_written_in_order_once_flushed(tmp_path):
    tracker = _tracker(tmp_path)
    parent = tracker.start_study("s", {"metric": "acc"}, {})
    created = []
    tracker.start_trial(parent, "s", "t1", {"lr": 0.1}, on_created=created.append)
    for step in (1, 2, 3):
        tracker.log_metrics("t1", {"acc": step / 10}, step)
    tracker.end_run("t1", "pruned", {"tuner.iterations": 3})
    flush_all()

    client = MlflowClient(tracker.uri)
    (run_id,) = created
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["tuner.status"] == "pruned"
    assert run.data.params == {"lr": "0.1"}
    history = client.get_metric_history(run_id, "acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_after_a_restart_a_trial_finds_its_run_instead_of_creating_another(tmp_path):
    first = _tracker(tmp_path)
    parent = first.start_study("s", {"metric": "acc"}, {})
    ids = []
    first.start_trial(parent, "s", "t1", {"lr": 0.1}, on_created=ids.append)
    first.flush()  # the run exists; say the driver died before recording its id

    second = _tracker(tmp_path)
    assert second.trial_runs(parent)["t1"] == (ids[0], True, {})
    second.start_trial(parent, "s", "t1", {"lr": 0.1}, again=True, on_created=ids.append)
    second.end_run("t1", "completed")
    second.flush()
    assert ids[0] == ids[1]
    children = MlflowClient(first.uri).search_runs(
        [first.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert [r.info.run_id for r in children] == [ids[0]]
    assert [r.running for r in second.trial_runs(parent).values()] == [False]


def test_a_resumed_study_finds_every_trial_run_however_many_pages_they_fill(tmp_path,
                                                                            monkeypatch):
    """Faked: the page size (2 runs, so 3 trials fill two pages)."""
    from tuner import tracking

    tracker = _tracker(tmp_path)
    parent = tracker.start_study("s", {"metric": "acc"}, {})
    for trial_id in ("t1", "t2", "t3"):
        tracker.start_trial(parent, "s", trial_id, {})
    tracker.flush()
    monkeypatch.setattr(tracking, "_PAGE", 2)
    assert sorted(tracker.trial_runs(parent)) == ["t1", "t2", "t3"]


def test_the_driver_does_not_wait_for_the_store(tmp_path):
    tracker = _tracker(tmp_path, batch_s=30.0)  # the writer sleeps before its first batch
    parent = tracker.start_study("s", {"metric": "acc"}, {})
    tracker.start_trial(parent, "s", "t1", {})
    tracker.log_metrics("t1", {"acc": 1.0}, 1)
    client = MlflowClient(tracker.uri)
    assert client.search_runs([tracker.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent}'") == []


# --- a store that fails, hangs or kills the writer: every wait is bounded -------------------

def _within(seconds, fn):
    """Run ``fn`` and return the exception it raised (None if none); fail, instead of hanging
    the test session, if it takes longer than ``seconds``."""
    outcome = []

    def run():
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s: a wait is not bounded"
    return outcome[0]


def _a_trial(tracker):
    parent = tracker.start_study("s", {"metric": "acc"}, {})
    tracker.start_trial(parent, "s", "t1", {"lr": 0.1})
    tracker.log_metrics("t1", {"acc": 0.5}, 1)
    return parent


def test_a_failed_batch_with_an_empty_message_is_reported_by_flush_and_warned_once(
        tmp_path, monkeypatch, capsys):
    """Fakes the store refusing writes: the client's log_batch raises ``Exception()``, whose
    message is empty (it used to kill the writer, and every flush then waited forever)."""
    tracker = _tracker(tmp_path)
    _a_trial(tracker)

    def refuse(*args, **kwargs):
        raise Exception()

    monkeypatch.setattr(tracker._client, "log_batch", refuse)
    error = _within(10, tracker.flush)
    assert isinstance(error, StudyError)
    assert "1 writes failed (the first: Exception)" in str(error)
    assert "the study record keeps every result" in str(error)

    tracker.log_metrics("t1", {"acc": 0.6}, 2)  # the writer is alive and still writing
    error = _within(10, tracker.flush)
    assert "2 writes failed (the first: Exception)" in str(error)
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "writing to MLflow" in warnings[0]

    error = _within(10, flush_all)  # the end of the study: raised once, then forgotten
    assert isinstance(error, StudyError) and "writes failed" in str(error)
    assert _within(10, flush_all) is None


def test_a_writer_thread_that_died_is_reported_not_waited_on(tmp_path, monkeypatch, capsys):
    """Fakes a client raising a BaseException that is not an Exception, which ends the
    writer thread."""
    class Gone(BaseException):
        pass

    tracker = _tracker(tmp_path)
    _a_trial(tracker)

    def die(*args, **kwargs):
        raise Gone("store client torn down")

    monkeypatch.setattr(tracker._client, "log_batch", die)
    error = _within(10, tracker.flush)
    assert isinstance(error, StudyError)
    assert "writer thread stopped (Gone: store client torn down)" in str(error)
    assert "stopped (Gone: store client torn down)" in capsys.readouterr().err
    tracker.log_metrics("t1", {"acc": 0.7}, 2)  # nothing left to write it: not queued
    assert isinstance(_within(10, tracker.flush), StudyError)
    _TRACKERS.discard(tracker)


def test_a_store_that_does_not_answer_times_the_flush_out(tmp_path, monkeypatch):
    """Fakes a store that hangs: log_batch blocks until the test releases it."""
    tracker = _tracker(tmp_path)
    _a_trial(tracker)
    release = threading.Event()
    monkeypatch.setattr(tracker._client, "log_batch", lambda *a, **k: release.wait(30))
    started = time.monotonic()
    error = _within(10, lambda: tracker.flush(timeout_s=0.5))
    assert isinstance(error, StudyError)
    assert "took more than 0.5 s to take the queued writes" in str(error)
    assert time.monotonic() - started < 5
    release.set()
    assert _within(10, tracker.flush) is None  # it answered after all: nothing failed


def test_a_study_ends_even_when_its_final_flush_fails(tmp_path, monkeypatch):
    """Fakes the store refusing writes (log_batch raises ``Exception()``) once a trial ran:
    the study's end (StudyBook.experiment_ended, called inside Tune) still saves the record
    and returns; flush_all, as the study closes, raises the failure."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = Tracker(uri, "specs").start_study("s", {"metric": "acc"}, {})
    record = StudyRecord.create(
        str(tmp_path / "s"), name="s", metric="acc", mode="max", num_samples=1,
        mlflow_uri=uri, mlflow_experiment="specs", parent_run_id=parent, settings={"metric": "acc"})
    book = StudyBook(record.path, verbose=False)
    book.trial_started("t1", {"lr": 0.1})
    book.trial_result("t1", 1, {"acc": 0.5}, node_id=None, seconds=1.0)

    def refuse(*args, **kwargs):
        raise Exception()

    monkeypatch.setattr(book.tracker._client, "log_batch", refuse)
    assert _within(10, lambda: book.experiment_ended(["t1"])) is None
    assert StudyRecord.load(record.path).trials["t1"].status == "interrupted"
    error = _within(10, flush_all)
    assert isinstance(error, StudyError) and "writes failed" in str(error)


def test_credentials_in_the_uri_go_as_basic_auth_and_are_never_printed():
    """A real HTTP server on 127.0.0.1 stands in for an MLflow server behind basic auth."""
    seen = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        probe(f"http://alice:s3cret-pw@127.0.0.1:{port}")
        assert seen == [("/health", "Basic " + base64.b64encode(b"alice:s3cret-pw").decode())]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(StudyError) as info:  # the server is gone now
        probe(f"http://alice:s3cret-pw@127.0.0.1:{port}", timeout_s=2)
    assert "s3cret-pw" not in str(info.value)
    assert f"http://alice:***@127.0.0.1:{port}" in str(info.value)
    assert masked("postgresql://bob:hunter22@db/mlflow") == "postgresql://bob:***@db/mlflow"
    assert masked("sqlite:///x.db") == "sqlite:///x.db"


def test_studies_starting_together_on_a_new_sqlite_store_all_open_it(tmp_path):
    """Three real processes open one not-yet-existing sqlite store at once (MLflow creates
    its tables on first use; unserialised, all but one die with `table ... already
    exists`). Nothing is faked."""
    import subprocess
    import sys

    code = ("import sys\nfrom tuner.tracking import Tracker\n"
            "print(Tracker(sys.argv[1], sys.argv[2]).experiment_id)\n")
    uri = f"sqlite:///{tmp_path}/new.db"
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for name in ("a", "b", "shared", "shared")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-500:] for _, err in outs]
    ids = [out.strip() for out, _ in outs]
    assert ids[2] == ids[3] and len(set(ids)) == 3


def test_a_new_sqlite_store_is_created_without_mlflows_info_lines(tmp_path, capfd):
    """A first `make demo` printed MLflow's "Creating initial MLflow database tables..."."""
    tracker = Tracker(f"sqlite:///{tmp_path}/new.db", "exp")
    tracker.start_study("s", {}, {})
    tracker.flush()
    out, err = capfd.readouterr()
    assert "database tables" not in out + err
    assert MlflowClient(f"sqlite:///{tmp_path}/new.db").get_experiment_by_name("exp")


def test_a_sqlite_stores_artifacts_lie_beside_the_database_not_in_the_working_directory(
        tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tracker = Tracker(f"sqlite:///{tmp_path}/store/m.db", "my study/1")
    parent = tracker.start_study("s", {"metric": "acc"}, {})
    (tmp_path / "plot.png").write_bytes(b"png")
    tracker.log_artifact(parent, str(tmp_path / "plot.png"))
    tracker.flush()
    assert list((tmp_path / "store" / "mlruns" / "my_study_1").rglob("plot.png"))
    assert list(elsewhere.iterdir()) == []
