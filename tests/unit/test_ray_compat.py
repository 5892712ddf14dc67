"""The Ray boundary: every private Ray API tuner relies on is there in the installed Ray,
and one that goes away stops the product with a line naming the Ray it was built for.

Faked: the loss of each API, by monkeypatching it away in this process (no cluster runs).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import ray

from tuner import ray_compat
from tuner.ray_compat import RayCompatError


@pytest.fixture(autouse=True)
def _fresh_lookups():
    """Each test looks the APIs up again (the boundary caches what it found)."""
    for cached in (ray_compat._draining_nodes, ray_compat._check_mixin_hook,
                   ray_compat.check_env_switches):
        cached.cache_clear()
    yield
    for cached in (ray_compat._draining_nodes, ray_compat._check_mixin_hook,
                   ray_compat.check_env_switches):
        cached.cache_clear()


def test_the_installed_ray_has_every_api_we_rely_on():
    ray_compat.check()


def test_the_installed_ray_is_the_one_we_were_built_for():
    assert ray.__version__ == ray_compat.BUILT_FOR


def _says_versions(error: pytest.ExceptionInfo) -> None:
    text = str(error.value)
    assert f"Ray {ray.__version__} lacks" in text
    assert f"built for Ray {ray_compat.BUILT_FOR}" in text
    assert "constraints.txt" in text


def test_a_moved_draining_state_fails_loudly(monkeypatch):
    from ray._private import state

    monkeypatch.delattr(type(state.state), "get_draining_nodes")
    with pytest.raises(RayCompatError, match="draining state") as error:
        ray_compat.draining_node_ids()
    _says_versions(error)


def test_a_trial_does_not_stop_checkpointing_silently_when_the_drain_api_moved(monkeypatch):
    from tuner import engine, trainable

    def moved() -> bool:
        raise RayCompatError("the draining state of nodes", "gone")

    monkeypatch.setattr(engine, "node_is_draining", moved)
    monkeypatch.setattr(trainable, "_drain_checked", [0.0, False])
    with pytest.raises(RayCompatError):
        trainable._draining()


def test_a_gcs_client_without_drain_node_fails_loudly(monkeypatch):
    import ray._raylet

    class NoDrain:
        pass

    monkeypatch.setattr(ray._raylet, "InnerGcsClient", NoDrain)
    with pytest.raises(RayCompatError, match="drain-node call.*NoDrain has no drain_node"):
        ray_compat.preemption_drain("127.0.0.1:1")


def test_a_mixin_hook_ray_ignores_fails_instead_of_charging_zero(monkeypatch):
    from ray.tune.trainable import function_trainable

    original = function_trainable.wrap_function

    def ignores_mixins(train_func, name=None):
        train_func = getattr(train_func, "__wrapped__", train_func)
        return original(lambda config: train_func(config), name)

    monkeypatch.setattr(function_trainable, "wrap_function", ignores_mixins)
    with pytest.raises(RayCompatError, match="ignores __mixins__.*\\$0") as error:
        ray_compat.with_mixins(lambda config: None, object)
    _says_versions(error)


def test_an_asha_without_the_fields_we_read_fails_at_construction(monkeypatch):
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from tuner.engine import search as engine

    original = AsyncHyperBandScheduler.__init__

    def without_max_t(self, *args, **kwargs):
        original(self, *args, **kwargs)
        del self._max_t

    monkeypatch.setattr(AsyncHyperBandScheduler, "__init__", without_max_t)
    with pytest.raises(RayCompatError, match="AsyncHyperBandScheduler.*has no _max_t"):
        engine._Asha(time_attr="training_iteration", metric="m", mode="max", max_t=4)


def test_an_optuna_search_without_the_fields_we_read_fails_at_construction(monkeypatch):
    from ray.tune.search.optuna import OptunaSearch

    from tuner.engine import search as engine

    monkeypatch.delattr(OptunaSearch, "_suggest_from_define_by_run_func")
    asha = engine._Asha(time_attr="training_iteration", metric="m", mode="max", max_t=4)
    with pytest.raises(RayCompatError, match="_suggest_from_define_by_run_func"):
        engine._Search(asha, space=lambda trial: None, metric="m", mode="max")


def test_an_env_switch_ray_no_longer_reads_fails_loudly(monkeypatch):
    import ray.tune.constants

    monkeypatch.setattr(ray.tune.constants, "TUNE_ENV_VARS",
                        ray.tune.constants.TUNE_ENV_VARS - {"TUNE_MAX_PENDING_TRIALS_PG"})
    with pytest.raises(RayCompatError, match="no longer read: TUNE_MAX_PENDING_TRIALS_PG"):
        ray_compat.check_env_switches()


def test_a_test_cluster_without_remove_node_fails_loudly(monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.delattr(Cluster, "remove_node")
    with pytest.raises(RayCompatError, match="Cluster has no remove_node"):
        ray_compat.local_cluster_class()


def test_a_moved_cluster_config_validator_fails_loudly(monkeypatch):
    import ray.autoscaler._private.util as util

    monkeypatch.delattr(util, "validate_config")
    with pytest.raises(RayCompatError, match="config validator"):
        ray_compat.cluster_config_validator()


def test_a_moved_key_value_store_fails_loudly(monkeypatch):
    from ray.experimental import internal_kv

    monkeypatch.delattr(internal_kv, "_internal_kv_list")
    with pytest.raises(RayCompatError, match="the GCS key-value store"):
        ray_compat.cluster_kv_items("tuner/")


def test_preparing_a_local_cluster_on_a_fresh_machine_makes_the_token_and_temp_dir(tmp_path):
    """A machine where Ray never ran: empty HOME, RAY_TMPDIR never used, no RAY_AUTH_MODE.
    (In a subprocess: Ray caches the token and auth mode per process.)"""
    home, ray_tmp = tmp_path / "home", tmp_path / "raytmp"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_tmp))
    out = subprocess.run(
        [sys.executable, "-c", "import os\nfrom tuner.ray_compat import prepare_local_cluster\n"
         "prepare_local_cluster()\nprint(os.environ['RAY_AUTH_MODE'])"],
        env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "token"
    assert (home / ".ray" / "auth_token").read_text().strip()
    assert (ray_tmp / "ray").is_dir()


def test_preparing_keeps_a_token_that_exists_and_a_mode_the_user_chose(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("mine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_TMPDIR=str(tmp_path / "raytmp"))
    for mode in (None, "disabled"):
        run_env = env if mode is None else {**env, "RAY_AUTH_MODE": mode}
        out = subprocess.run(
            [sys.executable, "-c", "import os\nfrom tuner.ray_compat import prepare_local_cluster"
             "\nprepare_local_cluster()\nprint(os.environ['RAY_AUTH_MODE'])"],
            env=run_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == (mode or "token")
        assert (home / ".ray" / "auth_token").read_text() == "mine"


@pytest.mark.parametrize(("value", "expected"), [
    ('{"runtime_env": {"working_dir": "gcs://_ray_pkg_1.zip"}}', "gcs://_ray_pkg_1.zip"),
    ('{"runtime_env": {"pip": ["x"]}}', None),  # a job without --working-dir
    ('{"runtime_env": null}', None), ("not json", None), (None, None)])
def test_a_jobs_driver_knows_it_runs_in_a_copy_of_its_working_dir(monkeypatch, value, expected):
    """What Ray's job supervisor hands its driver (the environment variable it sets)."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    if value is None:
        monkeypatch.delenv(RAY_JOB_CONFIG_JSON_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(RAY_JOB_CONFIG_JSON_ENV_VAR, value)
    assert ray_compat.job_working_dir() == expected


def test_rays_notice_that_token_auth_is_on_is_quiet_while_tuner_starts_a_cluster():
    """Every first `tuner run` printed Ray's WARNING "Token authentication is enabled for
    this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out", though tuner keeps it on on
    purpose. Ray's own warning functions, through the logger they write to; the warning that
    token auth is off still shows, and the notice shows again outside tuner's start."""
    import logging

    from ray._private.authentication import authentication_token_setup as setup

    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage().split(".")[0])
    logger = logging.getLogger(setup.__name__)
    logger.addHandler(handler)
    try:
        with ray_compat.token_notice_quiet():
            setup._warn_token_auth_enabled()
            setup._warn_token_auth_disabled()
        setup._warn_token_auth_enabled()
    finally:
        logger.removeHandler(handler)
    assert seen == ["Token authentication is disabled for this Ray cluster",
                    "Token authentication is enabled for this Ray cluster"]


def _snapshot(path, trial_ids, counter, finished=True):
    """Tune's two snapshot files as Tune 2.x writes them: the trial list (JSON, one
    [state JSON, run metadata] pair per trial) and the search generator's count (pickled)."""
    import json

    import ray.cloudpickle as cloudpickle

    (path / "experiment_state-2026-11-29_06-00-00.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": t}), "{}"] for t in trial_ids]}))
    (path / "search_gen_state-2026-11-29_06-00-00.json").write_bytes(
        cloudpickle.dumps({"counter": counter, "finished": finished}))


def _count(path):
    import ray.cloudpickle as cloudpickle

    return cloudpickle.loads((path / "search_gen_state-2026-11-29_06-00-00.json").read_bytes())


@pytest.mark.parametrize("listed, counter, started, expected", [
    # the budget stopped a first driver: 3 trials started, 1 created but not started
    (["a", "b", "c", "d"], 4, {"a", "b", "c"}, 3),
    # then a raised budget stopped again: the list keeps the old unstarted "d"
    (["a", "b", "c", "d", "e", "f", "g"], 6, {"a", "b", "c", "e", "f"}, 5),
    # twice stopped before any trial started (the list: 2, then 2 more): none counts
    (["a", "b"], 2, set(), 0),
    (["a", "b", "c", "d"], 2, set(), 0),
])
def test_a_raised_budget_counts_only_the_trials_that_started(tmp_path, listed, counter, started,
                                                            expected):
    """The search generator then creates num_samples minus those, never more (a count
    lowered below 0 made a study of 6 run 8)."""
    _snapshot(tmp_path, listed, counter)
    ray_compat.reconcile_trial_count(str(tmp_path), started=started)
    assert _count(tmp_path) == {"counter": expected, "finished": False}


def test_a_count_newer_than_the_trial_list_is_set_back_to_its_length(tmp_path):
    """A driver killed between Tune's two snapshot files: 5 counted, 3 listed."""
    _snapshot(tmp_path, ["a", "b", "c"], 5, finished=False)
    assert ray_compat.reconcile_trial_count(str(tmp_path)) == 2
    assert _count(tmp_path) == {"counter": 3, "finished": False}
