"""The `tuner` command on bad input: one line on stderr, exit code 2, no traceback, no state.

Runs the real console script in a subprocess, or `tuner.cli.main([...])` in this process;
no Ray cluster is started. A test that fakes something says what in its docstring.
"""

from __future__ import annotations

import os
import re
import socket
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
    """A wrong path is bad input (exit 2), as a wrong file is."""
    for command in ("report", "resume"):
        out = tuner(command, str(tmp_path), cwd=tmp_path)
        assert out.returncode == 2
        assert "no study here" in out.stderr and "Traceback" not in out.stderr
    out = tuner("resume", "tuner_results/nope", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert not (tmp_path / "tuner_results").exists()  # nor its lock file


def test_report_on_the_storage_path_names_the_studies_in_it(tmp_path, capsys):
    from tuner.record import StudyRecord

    for name in ("mlp-20261129-1", "mlp-20261129-2"):
        StudyRecord.create(str(tmp_path / "results" / name), name=name, metric="acc",
                           mode="max", num_samples=1, mlflow_uri="sqlite:///m.db",
                           mlflow_experiment=name, parent_run_id="p", settings={})
    (tmp_path / "results" / "not-a-study").mkdir()
    code, _, err = main(capsys, "report", str(tmp_path / "results"))
    assert one_line_error(code, err) == (
        f"error: {tmp_path}/results: no study here, but 2 in it: mlp-20261129-1, "
        f"mlp-20261129-2; pass one, e.g. {tmp_path}/results/mlp-20261129-2")


def test_report_on_a_relative_path_a_job_kept_under_home_points_there(tmp_path, capsys,
                                                                         monkeypatch):
    """A Ray job's driver keeps `tuner_results/<name>` under the home directory (its working
    directory is a copy Ray deletes); the same relative path from the shell finds it there."""
    from tuner.record import StudyRecord

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    StudyRecord.create(str(home / "tuner_results" / "job"), name="job", metric="acc",
                       mode="max", num_samples=1, mlflow_uri="sqlite:///m.db",
                       mlflow_experiment="job", parent_run_id="p", settings={})
    code, _, err = main(capsys, "report", "tuner_results/job")
    assert one_line_error(code, err) == (
        f"error: {work}/tuner_results/job: no study here, but there is one at "
        f"{home}/tuner_results/job "
        f"(a Ray job's driver keeps relative paths under the home directory); pass that")


def test_resume_of_a_finished_study_says_so_and_starts_nothing(tmp_path):
    """A finished study's record, written here (no Ray, no MLflow store behind it)."""
    from tuner.record import StudyRecord, StudyState

    record = StudyRecord.create(
        str(tmp_path / "done"), name="done", metric="acc", mode="max", num_samples=1,
        mlflow_uri=f"sqlite:///{tmp_path}/none.db", mlflow_experiment="done", parent_run_id="p",
        settings={"metric": "acc", "mode": "max", "num_samples": 1})
    record.state = StudyState.FINISHED
    record.save()
    out = tuner("resume", "done", cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # the summary's code: no trial reported acc
    assert "[tuner] study done finished already (0 trials); nothing to resume" in out.stdout
    assert "Traceback" not in out.stderr
    assert StudyRecord.load(record.path).resumes == 0


# --- bad input, in process: `tuner.cli.main([...])`, exit 2 and one line naming file and key --

def main(capsys, *argv):
    """Run the CLI in this process; return (exit code, stdout, stderr)."""
    from tuner.cli import main as cli_main

    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err.strip()


def test_an_experiment_path_that_is_a_directory(tmp_path, capsys):
    (tmp_path / "exp").mkdir()
    for command in ("validate", "run"):
        code, _, err = main(capsys, command, str(tmp_path / "exp"))
        assert "exp: is a directory; pass the path of a file" in one_line_error(code, err)


def test_a_yaml_file_that_is_not_utf8(tmp_path, capsys):
    (tmp_path / "exp.yaml").write_bytes(b"trainable: m:f\nmetric: \xff\xfe\n")
    code, _, err = main(capsys, "validate", str(tmp_path / "exp.yaml"))
    assert "exp.yaml: is not UTF-8 text (byte 23); save it as UTF-8" in one_line_error(code, err)


def test_a_yaml_file_that_cannot_be_read(tmp_path, capsys, monkeypatch):
    """Fakes the permission error (tests may run as root, who reads any file)."""
    (tmp_path / "exp.yaml").write_text("metric: acc\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tuner._files.open", denied, raising=False)
    code, _, err = main(capsys, "validate", str(tmp_path / "exp.yaml"))
    assert "exp.yaml: cannot be read (Permission denied); check its permissions" in \
        one_line_error(code, err)


def test_a_price_csv_that_is_not_utf8(tmp_path, capsys):
    (tmp_path / "prices.csv").write_bytes(b"instance_type,region\n\xe9t\xe9,x\n")
    code, _, err = main(capsys, "prices", "--prices", str(tmp_path / "prices.csv"))
    assert "prices.csv: is not UTF-8 text" in one_line_error(code, err)


def test_prices_name_each_source_once_below_the_table(capsys):
    """A source is a long line with its date: on every row it made rows ~250 characters."""
    code, out, _ = main(capsys, "prices", "--type", "c5.xlarge", "--type", "m5.large",
                        "--type", "g4dn.xlarge")
    assert code == 0
    lines = out.splitlines()
    rows = [ln for ln in lines[2:] if not ln.startswith("[")]
    notes = dict(ln.split(" ", 1) for ln in lines if ln.startswith("["))
    assert len(rows) == 3 and all(len(ln) < 100 for ln in rows)
    cited = {ref for row in rows for ref in re.findall(r"\[\d+\]", row)}
    assert cited == set(notes) and len(set(notes.values())) == len(notes)
    assert all(re.search(r"\(\d{4}-\d{2}-\d{2}\)$", source) for source in notes.values())


def test_report_on_a_file_instead_of_a_study_directory(tmp_path, capsys):
    (tmp_path / "exp.yaml").write_text("metric: acc\n")
    code, _, err = main(capsys, "report", str(tmp_path / "exp.yaml"))
    assert "exp.yaml: is a file, not a study directory; pass the directory a study was " \
        "written to" in one_line_error(code, err)


@pytest.mark.parametrize("text,message", [
    ("{", "tuner_study.json: is not a study record (Expecting property name"),
    ("{}", "tuner_study.json: name: missing or not a str (got None)"),
    ("[1, 2]", "tuner_study.json: is not a study record (a JSON object)"),
    ('{"name": "s", "metric": "acc", "mode": "max", "mlflow_uri": "sqlite:///m.db", '
     '"parent_run_id": "p", "trials": {"t1": 5}}',
     "tuner_study.json: trials.t1: must be an object"),
])
def test_report_on_a_damaged_study_record(tmp_path, capsys, text, message):
    (tmp_path / "tuner_study.json").write_text(text)
    code, _, err = main(capsys, "report", str(tmp_path))
    line = one_line_error(code, err)
    assert message in line and "run the study again with `tuner run`" in line


@pytest.mark.parametrize("argv,message", [
    (["--worker", "c5.xlarge:spot:abc"], "--worker: CPUS: must be a whole number >= 1, got "
                                         "'abc' in 'c5.xlarge:spot:abc'; e.g. c5.xlarge:spot:1"),
    (["--worker", "c5.xlarge:spot:0"], "--worker: CPUS: must be a whole number >= 1, got '0'"),
    (["--hazard", "-1"], "--hazard: must be a finite number >= 0 (e.g. --hazard 0.6), got -1"),
    (["--hazard", "nan"], "--hazard: must be a finite number >= 0 (e.g. --hazard 0.6), got nan"),
    (["--time-scale", "0"], "--time-scale: must be a finite number > 0 (e.g. --time-scale 60), "
                            "got 0"),
    (["--head-cpus", "-2"], "--head-cpus: must be a finite number >= 0"),
])
def test_cluster_up_checks_its_flags_before_starting_anything(capsys, monkeypatch, argv,
                                                              message):
    """Fakes the local cluster: starting it fails the test."""
    def start(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr("tuner.spot.local.LocalSpotCluster", start)
    code, _, err = main(capsys, "cluster", "up", "--local", *argv)
    assert message in one_line_error(code, err)


def test_an_mlflow_uri_with_an_unknown_scheme_is_refused_without_its_password(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text("lr: {type: float, low: 0.1, high: 1}\n")
    (tmp_path / "mytrain.py").write_text("def train(config):\n    pass\n")
    for uri, ok in (("notascheme://x", False), ("bogus://me:hunter22@host/db", False),
                    ("postgresql+psycopg2://me:hunter22@host/db", True),
                    ("https://me:hunter22@host:5000", True), ("databricks", True),
                    ("sqlite:////tmp/m.db", True)):
        (tmp_path / "exp.yaml").write_text(f"trainable: mytrain:train\nspace: space.yaml\n"
                                           f"metric: acc\nmlflow_uri: '{uri}'\n")
        code, _, err = main(capsys, "validate", str(tmp_path / "exp.yaml"))
        if ok:
            assert code == 0, err
            continue
        line = one_line_error(code, err)
        assert "exp.yaml: mlflow_uri: MLflow has no tracking store for scheme" in line
        assert "use sqlite:///mlflow.db" in line and "hunter22" not in line


def test_validate_says_an_experiment_lacks_its_trainable(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    (tmp_path / "space.yaml").write_text("lr: {type: float, low: 0.1, high: 1}\n")
    (tmp_path / "exp.yaml").write_text("space: space.yaml\nmetric: acc\n")
    code, _, err = main(capsys, "validate", str(tmp_path / "exp.yaml"))
    assert one_line_error(code, err) == \
        "error: exp.yaml: trainable: is required (see examples/digits_mlp.yaml)"


@pytest.mark.parametrize("text, what", [("", "empty"), ("- lr\n- momentum\n", "a YAML list")])
def test_validate_says_a_file_that_is_not_a_mapping_is_none_of_the_three(tmp_path, monkeypatch, capsys,
                                                                          text, what):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    (tmp_path / "exp.yaml").write_text(text)
    code, _, err = main(capsys, "validate", str(tmp_path / "exp.yaml"))
    line = one_line_error(code, err)
    assert line.startswith(f"error: exp.yaml: is {what}; `tuner validate` reads a mapping")
    assert "an experiment (trainable:, space:, metric:)" in line


def test_prices_into_a_closed_pipe_exits_quietly(tmp_path):
    """`tuner prices | head -1`, made certain: the reader is gone before anything is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "tuner.cli", "prices"], cwd=tmp_path,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 141  # as a command killed by SIGPIPE


def test_a_ray_address_where_no_cluster_listens_fails_in_seconds(tmp_path):
    """RAY_ADDRESS names a closed port on 127.0.0.1 (a stopped cluster): one line, at once,
    instead of Ray's minutes of connection warnings; no study is started."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    (tmp_path / "mytrain.py").write_text("def train(config):\n    pass\n")
    (tmp_path / "exp.yaml").write_text(
        "trainable: mytrain:train\nspace: {x: {type: float, low: 0, high: 1}}\nmetric: acc\n")
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "run", "exp.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "RAY_ADDRESS": closed})
    assert out.returncode == 1, out.stderr  # the study's trouble, not the input's (2)
    assert out.stderr.startswith(f"error: no Ray cluster answers at {closed} (RAY_ADDRESS)")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "tuner_results").exists() and not (tmp_path / "mlflow.db").exists()


def _study_files(tmp_path, setting):
    (tmp_path / "mytrain.py").write_text("def train(config):\n    pass\n")
    (tmp_path / "exp.yaml").write_text("trainable: mytrain:train\nspace: {x: {type: float, low: "
                                       f"0, high: 1}}}}\nmetric: acc\n{setting}\n")
    return str(tmp_path / "exp.yaml")


@pytest.mark.parametrize("setting, message", [
    ("storage_path: afile/results", "exp.yaml: storage_path: 'afile/results' cannot hold the "
     "study ({tmp}/afile is a file, not a directory); pass a directory you can write to"),
    ("mlflow_uri: sqlite:///afile/m.db", "exp.yaml: mlflow_uri: 'sqlite:///afile/m.db' cannot "
     "be written ({tmp}/afile is a file, not a directory); pass a sqlite:/// path in a "
     "directory you can write to, e.g. sqlite:///mlflow.db"),
])
def test_a_study_that_could_not_write_its_files_is_refused_before_anything_is_made(
        tmp_path, capsys, monkeypatch, setting, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    code, _, err = main(capsys, "run", _study_files(tmp_path, setting))
    assert one_line_error(code, err) == f"error: {message.format(tmp=tmp_path)}"
    assert sorted(os.listdir(tmp_path)) == ["afile", "exp.yaml", "mytrain.py"], os.listdir(tmp_path)


def test_a_storage_path_in_a_directory_without_write_permission_is_refused(tmp_path, capsys,
                                                                           monkeypatch):
    """Fakes the permission (tests may run as root, who writes anywhere)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: p != str(tmp_path / "ro") and access(p, mode))
    code, _, err = main(capsys, "run", _study_files(tmp_path, "storage_path: ro/results"))
    assert one_line_error(code, err) == (
        f"error: exp.yaml: storage_path: 'ro/results' cannot hold the study ({tmp_path}/ro is "
        f"not writable); pass a directory you can write to")
    assert os.listdir(tmp_path / "ro") == [] and not (tmp_path / "mlflow.db").exists()


def test_a_storage_path_the_file_system_refuses_even_to_root_is_refused(tmp_path, capsys,
                                                                         monkeypatch):
    """/proc takes no new directory from anyone; root passes os.access there."""
    monkeypatch.chdir(tmp_path)
    code, _, err = main(capsys, "run", _study_files(tmp_path, "storage_path: /proc/results"))
    assert one_line_error(code, err).startswith(
        "error: exp.yaml: storage_path: '/proc/results' cannot hold the study (")
    assert err.rstrip().endswith("pass a directory you can write to")


def test_a_tracking_server_that_does_not_answer_is_refused_before_ray_starts(tmp_path, capsys,
                                                                             monkeypatch):
    """mlflow_uri names a closed port on 127.0.0.1 (a server not started); spies on the
    engine's preflight (what joins or starts Ray): it must not be called."""
    from tuner import engine

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine, "preflight", lambda *a: pytest.fail("Ray was started"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, _, err = main(capsys, "run", _study_files(tmp_path, f"mlflow_uri: {closed}"))
    assert one_line_error(code, err).startswith(
        f"error: exp.yaml: mlflow_uri: MLflow tracking store '{closed}' is not usable "
        f"(unreachable: ")
    assert err.rstrip().endswith("start the server or pass another mlflow_uri (e.g. "
                                 "sqlite:///mlflow.db)")
    assert sorted(os.listdir(tmp_path)) == ["exp.yaml", "mytrain.py"], os.listdir(tmp_path)


def test_validate_says_which_way_an_experiment_optimises(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for mode, says in (("max", "maximise"), ("min", "minimise")):
        _study_files(tmp_path, f"mode: {mode}")
        code, out, _ = main(capsys, "validate", "exp.yaml")
        assert code == 0
        assert out.strip() == f"exp.yaml: valid experiment (1 parameter, 20 trials, {says} acc)"


def test_validate_counts_a_spaces_parameters_and_names_its_constants_apart(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text("lr: {type: float, low: 0.1, high: 1}\nepochs: 5\n")
    code, out, _ = main(capsys, "validate", str(tmp_path / "space.yaml"))
    assert code == 0
    assert out.strip() == f"{tmp_path / 'space.yaml'}: valid search space (1 parameter: lr; " \
                          f"constant epochs)"


@pytest.mark.parametrize("recorded, says", [
    ({"x": {"type": "float", "low": 0, "high": 1}}, ""),
    ({"x": {"type": "float", "low": 0, "high": 2}}, " (with another search space)"),
])
def test_a_named_study_that_exists_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch,
                                                                recorded, says):
    """Spies on the engine's preflight (what joins or starts Ray): it must not be called. The
    name is the file's to change (exit 2, and `validate` says so first); a space unlike the
    recorded one is said, since `tuner resume` would go on with the recorded one."""
    from tuner import engine
    from tuner.record import StudyRecord

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine, "preflight", lambda *a: pytest.fail("Ray was started"))
    existing = tmp_path / "tuner_results" / "once"
    existing.mkdir(parents=True)
    StudyRecord.create(str(existing), name="once", metric="acc", mode="max", num_samples=1,
                       mlflow_uri="sqlite:///mlflow.db", mlflow_experiment="once",
                       parent_run_id="p1", settings={}, space=recorded)
    for command in ("validate", "run"):
        code, _, err = main(capsys, command, _study_files(tmp_path, "name: once"))
        assert code == 2
        assert err.strip() == (
            f"error: exp.yaml: name: a study named 'once' exists already in {existing}{says}; "
            f"`tuner resume {existing}` continues it as recorded, or choose another name")


@pytest.mark.parametrize("command", ["run", "estimate"])
def test_a_search_space_given_for_an_experiment_says_where_it_belongs(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    (tmp_path / "mlp.yaml").write_text("lr: {type: float, low: 0.001, high: 0.1, log: true}\n"
                                       "max_iter: 200\n")
    code, _, err = main(capsys, command, str(tmp_path / "mlp.yaml"))
    assert one_line_error(code, err) == (
        "error: mlp.yaml: is a search space, not an experiment; an experiment file names it "
        "under `space:` (e.g. `space: mlp.yaml`, beside `trainable:` and `metric:`; see "
        "examples/digits_mlp.yaml)")


def test_watch_preemption_without_a_cluster_says_so_at_once(capsys):
    """A port nothing listens on (bound, then closed): one error line, exit 1, instead of
    Ray's driver retrying the address for minutes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = main(capsys, "watch-preemption", "--address", f"127.0.0.1:{port}")
    assert code == 1 and out == ""
    assert err.startswith(f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (")
    assert len(err.strip().splitlines()) == 1
