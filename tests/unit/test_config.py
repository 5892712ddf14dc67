"""Study settings and experiment files: valid ones load, each mistake gets one clear line."""

from __future__ import annotations

import os
import re
import textwrap

import pytest

from tuner.config import StudySettings, import_trainable, load_experiment, settings_from
from tuner.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(tmp_path, text, name="exp.yaml"):
    (tmp_path / "space.yaml").write_text("lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n")
    (tmp_path / "mytrain.py").write_text("def train(config):\n    pass\n")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_shipped_experiment_loads():
    exp = load_experiment(os.path.join(ROOT, "examples", "digits_mlp.yaml"))
    assert exp.settings.metric == "val_accuracy"
    assert exp.settings.max_t == 30 and exp.settings.grace_period == 2
    assert callable(exp.load_trainable())


def test_space_paths_are_relative_to_the_experiment_file(tmp_path, monkeypatch):
    path = write(tmp_path, """
        trainable: mytrain:train
        space: space.yaml
        metric: acc
        scheduler: {max_t: 9, grace_period: 3, reduction_factor: 2}
    """)
    monkeypatch.chdir("/")
    exp = load_experiment(path)
    assert exp.space.names == ("lr",)
    assert (exp.settings.max_t, exp.settings.grace_period, exp.settings.reduction_factor) == (9, 3, 2)
    assert exp.load_trainable().__name__ == "train"


BAD = [
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nnum_sample: 3\n",
     "exp.yaml: num_sample: unknown key (did you mean 'num_samples'?)"),
    ("trainable: mytrain:train\nspace: space.yaml\n", "exp.yaml: metric: is required"),
    ("trainable: mytrain:train\nspace: nope.yaml\nmetric: acc\n",
     "exp.yaml: space: file 'nope.yaml' not found"),
    ("trainable: mytrain\nspace: space.yaml\nmetric: acc\n",
     "exp.yaml: trainable: must be 'module:function'"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n"
     "scheduler: {max_t: 2, grace_period: 5}\n",
     "exp.yaml: scheduler.grace_period: must be <= max_t, got grace_period=5, max_t=2"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nscheduler: {max_tt: 2}\n",
     "exp.yaml: scheduler.max_tt: unknown key (did you mean 'max_t'?)"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nscheduler: {grace: 2}\n",
     "exp.yaml: scheduler.grace: unknown key (did you mean 'grace_period'?)"),
    ("trainable: mytrain.train\nspace: space.yaml\nmetric: acc\n",
     "exp.yaml: trainable: must be 'module:function', e.g. 'mytrain:train', got 'mytrain.train'"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nmode: maximize\n",
     "exp.yaml: mode: must be 'min' or 'max', got 'maximize'"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: val_loss\n",
     "exp.yaml: mode: is not set, and 'val_loss' reads as a loss: the default, max, would "
     "maximise it; set mode: min (or mode: max if a higher val_loss is better)"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: tuner.cost_usd\n",
     "exp.yaml: metric: names starting with `tuner.` are reserved"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nnum_samples: 0\n",
     "exp.yaml: num_samples: must be an integer >= 1, got 0"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nscheduler: {reduction_factor: 1}\n",
     "exp.yaml: scheduler.reduction_factor: must be a number > 1"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nresources_per_trial: {cpu: -1}\n",
     "exp.yaml: resources_per_trial.cpu: must be a finite number >= 0, got -1"),
    ("- just\n- a list\n", "exp.yaml: an experiment file is a mapping"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nbudget_usd: 0\n",
     "exp.yaml: budget_usd: must be a finite number of dollars > 0 (or null for no budget), got 0"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\ndefault_instance_type: m5.larg\n",
     "exp.yaml: default_instance_type: no price for 'm5.larg' in us-east-1 (did you mean 'm5.large'?)"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nregion: us-east1\n",
     "exp.yaml: region: no prices for region 'us-east1' (did you mean 'us-east-1'?)"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\ndefault_market: spott\n",
     "exp.yaml: default_market: must be 'spot' or 'on-demand', got 'spott' (did you mean 'spot'?)"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nbudget_alerts: [50, 120]\n",
     "exp.yaml: budget_alerts: must be a list of percentages in (0, 100]"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nbudget_alerts: null\n",
     "exp.yaml: budget_alerts: must be a list of percentages in (0, 100], e.g. [50, 80, 100], "
     "or [] for no alerts, got None"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nbudget_usd: .nan\n",
     "exp.yaml: budget_usd: must be a finite number of dollars > 0 (or null for no budget), "
     "got nan"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nbudget_usd: .inf\n",
     "exp.yaml: budget_usd: must be a finite number of dollars > 0 (or null for no budget), "
     "got inf"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nbudget_usd: -5\n",
     "exp.yaml: budget_usd: must be a finite number of dollars > 0 (or null for no budget), "
     "got -5"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nmlflow_uri: notascheme://x\n",
     "exp.yaml: mlflow_uri: MLflow has no tracking store for scheme 'notascheme'"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nprices: nope.csv\n",
     "nope.csv: no such file"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\ntpe_multivariate: 'no'\n",
     "exp.yaml: tpe_multivariate: must be true or false, got 'no'"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\nlive_prices: 1\n",
     "exp.yaml: live_prices: must be true or false, got 1"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\ntpe_n_ei_candidates: 0\n",
     "exp.yaml: tpe_n_ei_candidates: must be an integer >= 1, got 0"),
    ("trainable: mytrain:train\nspace: space.yaml\nmetric: acc\ntpe_n_startup_trials: 2.5\n",
     "exp.yaml: tpe_n_startup_trials: must be an integer >= 1, got 2.5"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[10:50] for _, m in BAD])
def test_bad_experiments_say_file_key_and_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert message in str(info.value)


def test_a_trainable_that_cannot_be_imported_is_named(tmp_path):
    path = write(tmp_path, "trainable: nosuchmodule:train\nspace: space.yaml\nmetric: acc\n")
    with pytest.raises(ConfigError, match="exp.yaml: trainable: cannot import module 'nosuchmodule' "
                                          ".*; put it beside the experiment file or in the "
                                          "working directory, or install it$"):
        load_experiment(path).load_trainable()
    with pytest.raises(ConfigError, match="module 'mytrain' has no function 'nope'"):
        import_trainable("mytrain:nope", "exp.yaml", str(tmp_path))


def test_a_trainable_named_by_its_file_says_to_drop_the_suffix(tmp_path):
    with pytest.raises(ConfigError, match=r"^exp.yaml: trainable: names a module, not a file: "
                                          r"write mytrain:train "):
        import_trainable("mytrain.py:train", "exp.yaml", str(tmp_path))


@pytest.mark.parametrize("definition", ["def train():", "def train(config, epochs):",
                                        "def train(*, config):"])
def test_a_trainable_ray_cannot_call_with_the_config_is_refused_before_anything_runs(
        tmp_path, definition):
    module = _fresh_module(tmp_path, definition)
    with pytest.raises(ConfigError) as info:
        import_trainable(f"{module}:train", "exp.yaml", str(tmp_path))
    signature = definition[len("def train"):-1]
    assert str(info.value) == (f"exp.yaml: trainable: {module}:train{signature} cannot be called "
                               f"with one argument, the trial's config; define it as "
                               f"`def train(config):`")
    import tuner

    namespace: dict = {}
    exec(f"{definition}\n    pass\n", namespace)
    with pytest.raises(ConfigError, match=r"^tune\(\): trainable: train\("):
        tuner.tune(namespace["train"], {"x": {"type": "float", "low": 0, "high": 1}},
                   metric="acc", mode="max", verbose=False)


@pytest.mark.parametrize("definition", ["def train(config):", "def train(config, extra=1):",
                                        "def train(*args, **kwargs):"])
def test_a_trainable_callable_with_the_config_passes(tmp_path, definition):
    module = _fresh_module(tmp_path, definition)
    assert callable(import_trainable(f"{module}:train", "exp.yaml", str(tmp_path)))


def _fresh_module(tmp_path, definition):
    """A module defining ``definition`` under a name no earlier test imported."""
    import hashlib

    module = "trainable_" + hashlib.sha1(definition.encode()).hexdigest()[:10]
    (tmp_path / f"{module}.py").write_text(f"{definition}\n    pass\n")
    return module


@pytest.mark.parametrize("metric", ["loss", "error_rate", "valid/mse", "trainLoss"])
def test_a_metric_named_as_a_loss_needs_its_mode_said(metric):
    with pytest.raises(ConfigError, match=r"^tune\(\): mode: is not set, and .* reads as a loss"):
        settings_from({"metric": metric}, "tune()")
    assert settings_from({"metric": metric, "mode": "max"}, "tune()").mode == "max"
    assert settings_from({"metric": "val_accuracy"}, "tune()").mode == "max"  # the default


def test_api_settings_are_checked_the_same_way():
    with pytest.raises(ConfigError, match=r"^tune\(\): grace_period: must be <= max_t"):
        settings_from({"metric": "acc", "max_t": 2, "grace_period": 3}, "tune()")
    with pytest.raises(ConfigError, match=r"^StudySettings: grace_period: must be <= max_t"):
        StudySettings(metric="acc", max_t=2, grace_period=3)
    with pytest.raises(ConfigError, match="max_failures: must be an integer >= 0"):
        StudySettings(metric="acc", max_failures=-2)


@pytest.mark.parametrize("seed", [-5, 2**32, 1.5, True])
def test_a_seed_optuna_cannot_take_is_refused_before_anything_is_recorded(tmp_path, seed):
    """`seed: -5` passed validation, then the study's TPE sampler raised numpy's "Seed must
    be between 0 and 2**32 - 1" with a traceback, leaving a study no resume could run."""
    path = write(tmp_path, f"trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n"
                           f"seed: {seed}\n")
    with pytest.raises(ConfigError, match=r"seed: must be an integer from 0 to 4294967295 "
                                          r"\(2\*\*32 - 1\), or null for a random one, got "):
        load_experiment(path)
    for good in (0, 2**32 - 1, None):
        assert StudySettings(metric="acc", seed=good).seed == good


def test_the_mlflow_schemes_mlflow_opens_are_accepted(monkeypatch):
    for uri in ("sqlite:///mlflow.db", "sqlite:////tmp/m.db", "http://h:5000",
                "https://u:pw@h", "databricks", "databricks://profile",
                "postgresql://u:pw@h/db", "postgresql+psycopg2://h/db", "mysql+pymysql://h/db",
                "mssql+pyodbc://h/db"):
        assert StudySettings(metric="acc", mlflow_uri=uri).mlflow_uri == uri
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in
    for uri in ("file:///tmp/mlruns", "mlruns"):
        assert StudySettings(metric="acc", mlflow_uri=uri).mlflow_uri == uri


@pytest.mark.parametrize(("uri", "fix"), [
    ("mlflow.db", "use a database, e.g. sqlite:///mlflow.db (or set MLFLOW_ALLOW_FILE_STORE"),
    ("file:///tmp/mlruns", "use a database, e.g. sqlite:///mlruns.db"),
    ("sqlite://mlflow.db", "three slashes before a relative path (sqlite:///mlflow.db)")])
def test_an_mlflow_uri_mlflow_3_would_refuse_is_refused_with_the_fix(monkeypatch, uri, fix):
    """MLflow 3 refuses file stores unless opted in; `sqlite://x.db` is x.db as a host. Both
    passed `tuner validate` and failed in `tuner run` once Ray had started."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match=r"^exp.yaml: mlflow_uri: .*" + re.escape(fix)):
        settings_from({"metric": "acc", "mlflow_uri": uri}, "exp.yaml")


def test_a_password_in_a_refused_mlflow_uri_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        StudySettings(metric="acc", mlflow_uri="htp://me:hunter22@host:5000")
    assert "hunter22" not in str(info.value) and "htp://me:***@host:5000" in str(info.value)


def test_budget_alerts_none_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"budget_alerts: .* or \[\] for no alerts, got None"):
        StudySettings(metric="acc", budget_alerts=None)
    assert StudySettings(metric="acc", budget_alerts=()).budget_alerts == ()


def test_prices_paths_are_relative_to_the_experiment_file(tmp_path, monkeypatch):
    header = "instance_type,region,vcpus,gpus,memory_gib,on_demand_usd_hour,spot_usd_hour," \
             "on_demand_source,spot_source,date"
    (tmp_path / "my_prices.csv").write_text(
        f"{header}\nm5.large,us-east-1,2,0,8,1.5,0.5,a,b,2024\n")
    path = write(tmp_path, "trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n"
                           "prices: my_prices.csv\n")
    monkeypatch.chdir("/")
    exp = load_experiment(path)
    assert exp.settings.prices == str(tmp_path / "my_prices.csv")


def test_tune_refuses_a_space_that_is_no_space():
    import tuner

    with pytest.raises(ConfigError, match=r"^tune\(\): space: must be a path to a space YAML, "
                                          r"a mapping of parameters or a SearchSpace, got int 5"):
        tuner.tune(lambda config: None, space=5, metric="acc")


def test_tune_refuses_a_storage_path_it_could_not_write_before_making_anything(tmp_path,
                                                                              monkeypatch):
    import tuner

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"^tune\(\): storage_path: 'afile/results' cannot "
                                          r"hold the study \(.*/afile is a file, not a "
                                          r"directory\); pass a directory you can write to$"):
        tuner.tune(lambda config: None, {"x": {"type": "float", "low": 0, "high": 1}},
                   metric="acc", storage_path="afile/results")
    assert os.listdir(tmp_path) == ["afile"]


def test_a_setting_given_twice_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = write(tmp_path, "trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n"
                           "num_samples: 50\nmode: max\nnum_samples: 5\n")
    with pytest.raises(ConfigError, match=r"^exp.yaml: line 6: key 'num_samples' is given twice "
                                          r"in one mapping \(first on line 4\); keep one of them$"):
        load_experiment(path)


def test_a_ray_cluster_config_given_as_an_experiment_is_named_as_one(monkeypatch):
    """`tuner run cluster/aws-spot.yaml` said the file was a search space."""
    monkeypatch.chdir(os.path.join(os.path.dirname(__file__), "..", ".."))
    with pytest.raises(ConfigError, match=r"^cluster/aws-spot.yaml: is a Ray cluster config, "
                                          r"not an experiment; start the cluster with it "
                                          r"\(`ray up cluster/aws-spot.yaml`, "):
        load_experiment("cluster/aws-spot.yaml")


def test_an_error_names_the_file_as_typed_from_here_or_in_full_from_elsewhere(tmp_path,
                                                                             monkeypatch):
    """Two `exp.yaml` in two folders: a bare `exp.yaml:` did not say which was wrong."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "exp.yaml").write_text("space: space.yaml\nmetric: acc\n")
    monkeypatch.chdir(tmp_path / "a")
    with pytest.raises(ConfigError, match=r"^exp.yaml: trainable: is required"):
        load_experiment("exp.yaml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^b/exp.yaml: trainable: is required"):
        load_experiment(str(tmp_path / "b" / "exp.yaml"))
    monkeypatch.chdir(tmp_path / "a")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/b/exp.yaml: trainable: is required"):
        load_experiment("../b/exp.yaml")


def test_numbers_in_exponent_form_are_numbers_in_every_setting(tmp_path):
    """YAML 1.1 (PyYAML) reads `1e-2` as a string: `budget_usd: 1e-2` was refused as not a
    number. A quoted one stays a string."""
    path = write(tmp_path, "trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n"
                           "budget_usd: 1e-2\nseconds_per_iteration: 5E-1\n"
                           "scheduler: {reduction_factor: 3e0}\nname: '1e5'\n")
    settings = load_experiment(path).settings
    assert (settings.budget_usd, settings.seconds_per_iteration) == (0.01, 0.5)
    assert settings.reduction_factor == 3.0 and settings.name == "1e5"


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    """`<<: *anchor` then a key of the anchor's: the YAML way to override a default, no
    duplicate (Ray cluster configs use it)."""
    from tuner._files import read_yaml

    (tmp_path / "c.yaml").write_text("base: &b {cpu: 1, gpu: 0}\nnode:\n  <<: *b\n  cpu: 4\n")
    assert read_yaml(str(tmp_path / "c.yaml"))["node"] == {"cpu": 4, "gpu": 0}


@pytest.mark.parametrize("key, value", [("max_t", 10), ("grace_period", 2),
                                        ("reduction_factor", 3)])
def test_a_scheduler_setting_at_top_level_is_sent_under_scheduler(tmp_path, monkeypatch, key, value):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = write(tmp_path, f"trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n"
                           f"{key}: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value) == (f"exp.yaml: {key}: is an ASHA setting and goes under "
                               f"`scheduler:`, e.g. `scheduler: {{{key}: {value}}}`")


def test_a_study_setting_under_scheduler_is_sent_to_top_level(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = write(tmp_path, "trainable: mytrain:train\nspace: space.yaml\nmetric: acc\n"
                           "scheduler: {max_t: 10, num_samples: 5}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value) == ("exp.yaml: scheduler.num_samples: is not an ASHA setting "
                               "(those are grace_period, max_t, reduction_factor); put it at the "
                               "top level, e.g. `num_samples: 5`")


def test_tune_given_a_scheduler_mapping_is_told_to_pass_its_keys_as_keywords():
    import tuner

    with pytest.raises(ConfigError) as info:
        tuner.tune(lambda config: None, {"x": {"type": "float", "low": 0, "high": 1}},
                   metric="acc", scheduler={"max_t": 10, "grace_period": 1})
    assert str(info.value) == ("tune(): scheduler: is the experiment file's section; pass its "
                               "settings as keywords of their own: tune(..., max_t=10, "
                               "grace_period=1)")


def _trainable_in(tmp_path, module, code):
    (tmp_path / f"{module}.py").write_text(code)
    return write(tmp_path, f"trainable: {module}:train\nspace: space.yaml\nmetric: acc\n")


def test_a_trainable_importing_a_missing_package_names_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = _trainable_in(tmp_path, "needs_pkg", "import os\nimport notinstalled_pkg.sub\n")
    with pytest.raises(ConfigError, match=r"^exp.yaml: trainable: module 'needs_pkg' imports "
                                          r"'notinstalled_pkg', which is not installed "
                                          r"\(.*needs_pkg.py:2\); install it \(pip install "
                                          r"notinstalled_pkg\) or run where it is installed$"):
        load_experiment(path).load_trainable()


@pytest.mark.parametrize("module, code, error", [
    ("raises_at_import", "import os\n\nx = 1 / 0\n", "ZeroDivisionError: division by zero "
     r"\(.*raises_at_import.py:3\)"),
    ("bad_syntax", "def train(config:\n    pass\n", r"SyntaxError: .* \(.*bad_syntax.py:1\)"),
    ("raises_in_a_library", "import json\n\njson.loads('{')\n",  # the line is the module's
     r"JSONDecodeError: Expecting property name .* \(.*raises_in_a_library.py:3\)"),
], ids=["runtime error", "syntax error", "runtime error in a library"])
def test_a_trainable_whose_code_raises_on_import_says_so_and_where(tmp_path, monkeypatch, module, code,
                                                                   error):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = _trainable_in(tmp_path, module, code)
    with pytest.raises(ConfigError, match=f"^exp.yaml: trainable: importing module '{module}' "
                                          f"raised {error}; fix the error there$"):
        load_experiment(path).load_trainable()
