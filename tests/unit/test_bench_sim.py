"""The benchmark simulator (benchmarks/sim.py) and the protocol's statistics: the virtual
clock and cost, the order Tune's controller calls searcher and scheduler, and that the
product's classes prune as they do under Ray. No Ray cluster, no surrogate."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from benchmarks import log_ndtr, protocol, sim
from benchmarks.lcbench import EPOCHS, Curve


class FakeTask(sim.Task):
    """Epoch e takes 1 s (epoch 1: 0.5 s); accuracy rises to a config-dependent plateau."""

    def __init__(self) -> None:
        super().__init__("fake")

    def curve(self, config):
        plateau = 50 + 40 * (1 - abs(math.log10(config["learning_rate"]) + 2) / 2)
        epochs = np.arange(1, EPOCHS + 1)
        acc = plateau * (1 - np.exp(-epochs / 8))
        time = np.cumsum(np.where(epochs == 1, 0.5, 1.0))
        return Curve(time=time, val_accuracy=acc)


class Fixed(sim.Method):
    """Full training, fixed accuracy per trial, records the calls."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.calls: list[tuple] = []

    def suggest(self, trial_id):
        self.calls.append(("suggest", trial_id))
        return {"learning_rate": 0.01, "batch_size": 64, "max_dropout": 0.1, "max_units": 128,
                "momentum": 0.9, "num_layers": 2, "weight_decay": 0.01}

    def result(self, trial_id, it, acc):
        self.calls.append(("result", trial_id, it))
        return self.stop_after is None or it < self.stop_after


def test_iterations_are_epochs_2_to_52_and_the_first_pays_for_epoch_1():
    curve = FakeTask().curve({"learning_rate": 0.01})
    assert sim.MAX_T == 51
    assert sim.iteration_seconds(curve, 1) == pytest.approx(1.5)
    assert sim.iteration_seconds(curve, 2) == pytest.approx(1.0)
    assert sim.iteration_accuracy(curve, 1) == pytest.approx(curve.val_accuracy[1])  # epoch 2
    assert sum(sim.iteration_seconds(curve, i) for i in range(1, 52)) == pytest.approx(51.5)


def test_budget_is_worker_seconds_and_k_workers_run_k_trials_at_once():
    for workers in (1, 4):
        method = Fixed()
        trace = sim.simulate(method, FakeTask(), workers, budget_s=3 * 51.5)
        # 3 full trainings of 51.5 s fit the budget exactly, whatever K is
        assert trace.spent == pytest.approx(3 * 51.5)
        assert trace.iterations == pytest.approx(3 * 51, abs=workers)
        started = [c for c in method.calls if c[0] == "suggest"]
        assert len(started) == (3 if workers == 1 else 4)
        assert trace.cost == sorted(trace.cost) and trace.best == sorted(trace.best)


def test_a_stopped_trial_frees_its_worker_at_once():
    method = Fixed(stop_after=1)
    trace = sim.simulate(method, FakeTask(), 1, budget_s=15.0)
    assert trace.trials == 10  # 1.5 s each
    assert trace.finals == []


def test_max_trials_ends_the_study():
    trace = sim.simulate(Fixed(stop_after=2), FakeTask(), 2, max_trials=5)
    assert trace.trials == 5 and trace.iterations == 10


def test_ours_is_the_products_classes_and_prunes_as_under_ray():
    import optuna

    from tuner.engine.search import _Asha, _Search

    method = sim.tuner_method(0, grace_period=2)
    assert isinstance(method, sim.RayMethod)
    assert type(method.searcher) is _Search and type(method.scheduler) is _Asha
    assert [m for m, _ in method.scheduler._brackets[0]._rungs] == [18, 6, 2]  # grace 2, rf 3
    trace = sim.simulate(method, FakeTask(), 4, budget_s=20 * 51.5)
    states = [t.state for t in method.searcher._study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(method.scheduler.pruned) > 0
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(trace.finals) > 0
    assert trace.trials > 20  # ASHA stopped some early: more trials than 20 full trainings


def test_every_peer_runs_through_the_same_executor():
    for name, make in protocol.PEERS.items():
        if name in protocol.SLOW_PEERS or name in protocol.PINNED:
            continue  # slow, or needing numpy < 1.27 (.venv-peers: `make bench-quick` runs them)
        trace = sim.simulate(make(1), FakeTask(), 2, budget_s=4 * 51.5)
        assert trace.best and trace.spent == pytest.approx(4 * 51.5, rel=0.05), name


def test_best_at_reads_the_incumbent_at_each_budget():
    run = {"cost": [1.0, 2.0, 5.0], "best": [10.0, 20.0, 30.0], "spent": 6.0}
    got = protocol.best_at(run, np.array([0.5, 1.0, 4.9, 5.0, 6.0, 7.0]))
    assert got[0] == -np.inf and list(got[1:5]) == [10.0, 20.0, 30.0, 30.0]
    assert np.isnan(got[5])  # past what the study spent: unknown, not its last value


def test_holm_and_the_critical_difference():
    assert protocol.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert protocol.critical_difference(10, 17) == pytest.approx(3.164 * math.sqrt(110 / 102))
    assert protocol.hit_cost({"cost": [1, 3], "best": [80, 95]}, 90) == 3
    assert protocol.hit_cost({"cost": [1, 3], "best": [80, 85]}, 90) == math.inf


def test_the_simulated_study_samples_as_the_product_does():
    """The simulator's "ours" is the product's sampler: independent TPE unless
    ``tpe_multivariate`` is set, ``tpe_n_ei_candidates`` draws per suggestion after
    ``tpe_n_startup_trials`` random trials, seeded as
    ``run_study`` seeds it."""
    from tuner.config import TPE_CANDIDATES, TPE_STARTUP_TRIALS, StudySettings
    from tuner.engine.search import tpe_sampler

    settings = StudySettings(metric="acc")
    assert settings.tpe_multivariate is False and settings.tpe_n_ei_candidates == TPE_CANDIDATES
    shipped = sim.tuner_method(7).searcher._ot_study.sampler
    assert type(shipped) is type(tpe_sampler(7, False, 24, 10)) and shipped._multivariate is False
    assert shipped._n_ei_candidates == TPE_CANDIDATES
    assert settings.tpe_n_startup_trials == TPE_STARTUP_TRIALS == shipped._n_startup_trials
    assert tpe_sampler(7, True, 24, 10)._multivariate is True
    assert tpe_sampler(7, False, 5, 10)._n_ei_candidates == 5
    assert tpe_sampler(7, False, 24, 3)._n_startup_trials == 3


def test_the_numpy_1_peers_say_how_to_build_their_environment(monkeypatch, tmp_path):
    """DEHB, MOBSTER and Hyper-Tune run in .venv-peers; without it the protocol stops with
    the command that builds it (nothing fake: the interpreter path points nowhere)."""
    from benchmarks import pinned_peers

    monkeypatch.setattr(pinned_peers, "PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(SystemExit, match=r"make peers-env"):
        protocol.run_jobs([("DEHB", "3945", 0, 4, 100.0, 10.0)], procs=1)


def test_a_run_rewrites_only_the_studies_it_ran(monkeypatch, tmp_path):
    """results/runs.json.gz is the record of every round: a run without --reuse replaces the
    studies it repeated and keeps the rest (the choice rounds', other budgets). A real file
    in a temp directory; the studies are small dicts, not simulated."""
    def study(method, task, cpu_s):
        return {"method": method, "task": task, "seed": 0, "workers": 4, "budget": 20.0,
                "cost": [1.0], "best": [90.0], "trials": 1, "spent": 1.0, "cpu_s": cpu_s,
                "names": protocol.NAMES}

    runs = tmp_path / "runs.json.gz"
    monkeypatch.setattr(protocol, "RUNS", str(runs))
    monkeypatch.setattr(protocol, "_CACHE", {})
    monkeypatch.setattr(protocol, "_READ_ONLY", set())
    earlier = [study("round 1 candidate", "3945", 1.0), study(protocol.SHIPPED, "7593", 1.0)]
    with gzip.open(runs, "wt", encoding="utf-8") as f:
        json.dump(earlier, f)
    protocol._CACHE.update({(protocol.SHIPPED, "7593", 0, 4, 20.0): study(protocol.SHIPPED, "7593", 2.0),
                            ("DEHB", "7593", 0, 4, 20.0): study("DEHB", "7593", 3.0)})
    protocol.save_cache()
    got = {(r["method"], r["task"]): r["cpu_s"] for r in protocol._read(str(runs)).values()}
    assert got == {("round 1 candidate", "3945"): 1.0, (protocol.SHIPPED, "7593"): 2.0,
                   ("DEHB", "7593"): 3.0}
    # no timestamp in the gzip header (bytes 4-7): the same studies give the same bytes
    assert runs.read_bytes()[4:8] == bytes(4)


def test_earlier_defaults_are_read_only_where_every_study_was_recorded(monkeypatch, tmp_path):
    """make bench reads earlier defaults' held-out studies instead of running them again,
    and leaves out a method with any study missing. Small dicts in a real temp file."""
    def study(method, task, seed):
        return {"method": method, "task": task, "seed": seed, "workers": 4, "budget": 50.0,
                "cost": [1.0], "best": [90.0], "trials": 1, "spent": 1.0, "cpu_s": 1.0,
                "names": protocol.NAMES}

    runs = tmp_path / "runs.json.gz"
    monkeypatch.setattr(protocol, "RUNS", str(runs))
    full = [study("complete", t, s) for t in ("a", "b") for s in (0, 1)]
    with gzip.open(runs, "wt", encoding="utf-8") as f:
        json.dump(full + [study("partial", "a", 0), study("partial", "b", 0)], f)
    got = protocol.recorded_runs(("complete", "partial", "absent"), ["a", "b"], [0, 1], 4, 50.0)
    assert sorted((r["method"], r["task"], r["seed"]) for r in got) == sorted(
        ("complete", t, s) for t in ("a", "b") for s in (0, 1))
    assert protocol.recorded_runs(("complete",), ["a", "b"], [0, 1], 4, 20.0) == []


def test_a_slow_peers_further_seeds_are_read_while_every_task_has_them(monkeypatch, tmp_path):
    """make bench runs the slow peers on 2 seeds and reads further seeds run apart
    (benchmarks.more_seeds): each seed, in order, as long as every task has it; a seed one
    task lacks ends them, so the peer's seeds stay 0..n-1. Small dicts in a real temp file."""
    def study(method, task, seed, budget=20.0):
        return {"method": method, "task": task, "seed": seed, "workers": 4, "budget": budget,
                "cost": [1.0], "best": [90.0], "trials": 1, "spent": 1.0, "cpu_s": 1.0,
                "names": protocol.NAMES}

    runs = tmp_path / "runs.json.gz"
    monkeypatch.setattr(protocol, "RUNS", str(runs))
    held = [study("peer", t, s) for t in ("a", "b") for s in (2, 3, 5)] + [study("peer", "a", 4)]
    with gzip.open(runs, "wt", encoding="utf-8") as f:
        json.dump(held + [study("other", "a", 2), study("peer", "a", 6, budget=50.0)], f)
    got = protocol.recorded_seeds(("peer", "other"), ["a", "b"], [2, 3, 4, 5, 6], 4, 20.0)
    assert sorted((r["method"], r["task"], r["seed"]) for r in got) == sorted(
        ("peer", t, s) for t in ("a", "b") for s in (2, 3))


def test_our_earlier_defaults_are_not_ranked_with_ours_and_the_peers():
    """The goals rank ours among the peers: an earlier default of ours, reported beside
    them, takes no place in the ranks (it would only split ours'). Small dicts, 3 tasks."""
    def study(method, task, best):
        return {"method": method, "task": task, "seed": 0, "workers": 4, "cost": [0.1],
                "best": [best], "spent": 50.0}

    accuracy = {"ours": 95.0, "earlier": 96.0, "peer": 94.0, "other peer": 90.0}
    runs = [study(m, t, a) for m, a in accuracy.items() for t in ("a", "b", "c")]
    an = protocol.analyse(runs, list(accuracy), ["a", "b", "c"], [0], dict.fromkeys("abc", 100.0),
                          4, "ours", 20.0, unranked=("earlier",))
    row = an["by_budget"]["20"]
    assert row["mean_rank"] == {"ours": 1.0, "peer": 2.0, "other peer": 3.0}
    assert row["mean_regret"]["earlier"] == 4.0 and "earlier" in row["pairs"]


def test_the_benchmarks_log_phi_has_optunas_bits_on_every_branch():
    """benchmarks/log_ndtr.py computes Optuna's ``_truncnorm._log_ndtr`` over the array
    (the benchmark's speed-up): every value, edges and tails included, has the same bits."""
    from optuna.samplers._tpe import _truncnorm

    rng = np.random.default_rng(1)
    values = np.concatenate([log_ndtr.probe(), rng.uniform(-1e6, 1e6, 3000),
                             rng.normal(0, 8, 2983)]).reshape(-1, 10)
    with np.errstate(all="ignore"):
        optunas = np.frompyfunc(_truncnorm._log_ndtr_single, 1, 1)(values).astype(float)
        assert log_ndtr.same_bits(log_ndtr.log_ndtr(values), optunas)
    assert not log_ndtr.same_bits(np.array([1.0]), np.array([np.nextafter(1.0, 2.0)]))


def test_a_study_with_the_faster_log_phi_is_the_same_study(monkeypatch):
    """The product's sampler (integer and log parameters, 1024 candidates) chooses the
    same configurations with either log Phi, so the simulated study is the same."""
    from optuna.samplers._tpe import _truncnorm

    def study() -> tuple:
        trace = sim.simulate(sim.tuner_method(3), FakeTask(), 4, budget_s=6 * 51.5)
        return trace.trials, trace.cost, trace.best

    optunas = study()
    monkeypatch.setattr(_truncnorm, "_log_ndtr", _truncnorm._log_ndtr)  # undone after the test
    assert log_ndtr.install() and _truncnorm._log_ndtr is log_ndtr.log_ndtr
    assert study() == optunas


def test_the_faster_log_phi_stays_out_where_optunas_differs(monkeypatch):
    from optuna.samplers._tpe import _truncnorm

    def another_version(a):
        return np.nextafter(log_ndtr.log_ndtr(a), 0.0)

    monkeypatch.setattr(_truncnorm, "_log_ndtr", another_version)
    with pytest.warns(RuntimeWarning, match="its own"):
        assert not log_ndtr.install()
    assert _truncnorm._log_ndtr is another_version


def test_optunas_hyperband_peer_is_the_same_study_in_every_run():
    """HyperbandPruner assigns brackets by a hash of the study's name: the peer names its
    study after the seed, so two runs (two fresh studies) of a seed agree."""
    def study() -> tuple:
        trace = sim.simulate(sim.optuna_hyperband(5), FakeTask(), 2, budget_s=4 * 51.5)
        return trace.trials, trace.cost, trace.best

    assert study() == study()


def test_where_a_studys_best_lies_is_read_from_the_study_the_protocol_runs():
    """`benchmarks.bounds` re-runs a protocol study keeping each trial's configuration: its
    best is the protocol's own incumbent, and its count of parameters at an end of their
    range is the product's `SearchSpace.at_edge`."""
    from benchmarks import bounds

    task = sim.shared().tasks[0]
    fte = protocol.reference([task])[task]["fte_s"]
    job = ("random search (full fidelity)", task, 0, fte)
    row = bounds.study(job)
    run = protocol._job((*job[:3], bounds.WORKERS, bounds.BUDGET_FTE * fte, fte))
    assert row["best"] == max(run["best"])
    assert row["at_bounds"] == len(sim.space().at_edge(row["config"]))
    corner = {n: p["high"] for n, p in sim.SPACE.items()}
    assert bounds.at_bounds(corner) == len(sim.SPACE)
    assert bounds.at_bounds({n: (p["low"] + p["high"]) / 2 for n, p in sim.SPACE.items()}) == 0


def test_ours_minus_a_peer_where_best_configurations_lie_weighs_each_task_once():
    """A task run on more seeds does not count more: seeds are averaged within a task,
    and the CI is over tasks."""
    from benchmarks import bounds

    def row(method, task, seed, best):
        return {"method": method, "task": task, "seed": seed, "best": best,
                "best_inside": best - 1}

    data = {"studies": [row("ours", "a", 0, 70), row("peer", "a", 0, 72),
                        row("ours", "a", 1, 70), row("peer", "a", 1, 76),
                        row("ours", "a", 2, 70),  # the peer has no seed 2 on task a
                        row("ours", "b", 0, 80), row("peer", "b", 0, 79)]}
    out = bounds.paired_inside(data, "ours", "peer")
    assert (out["pairs"], out["tasks"]) == (3, 2)
    assert out["best"][0] == out["best_inside"][0] == ((4 + -1) / 2)  # task a: (2 + 6) / 2
