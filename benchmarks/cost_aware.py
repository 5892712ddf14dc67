"""Round 9's candidate: ASHA with cost-aware promotion (the issue's item 4), for stopping.

Syne Tune's ``CostPromotionRungSystem`` (Salinas et al.) promotes a trial from a rung while
the trials ranked at or above it account for at most 1/rf of the rung's cost (their
seconds to reach it), so that cheap configurations take more of the slots. Our ASHA stops
rather than pauses, so a trial is judged once, on arrival: it goes on while the rung's
trials strictly better than it, plus itself, cost at most 1/rf of the rung's cost,
itself included; the first trial at a rung goes on (as in Ray's ASHA).

With every cost 1 the same rule is a plain rank rule that differs a little from Ray's
percentile cutoff (it stops the second trial at a rung; Ray lets it on if it is the
better), so the round runs that too (``unit_costs``): the control that separates the
cost from the rule. The scheduler is the product's ``_Asha`` with its brackets' rule
replaced; the searcher is the product's, as shipped.
"""

from __future__ import annotations

from typing import Any

from benchmarks import sim


def _cost_asha(unit_costs: bool, **kwargs: Any) -> Any:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    from tuner.engine.search import _Asha

    class Bracket(_Bracket):
        def __init__(self, base: _Bracket, scheduler: Any) -> None:
            self.__dict__.update(base.__dict__)
            self.costs: dict[float, dict[str, float]] = {m: {} for m, _ in self._rungs}
            self.scheduler = scheduler

        def on_result(self, trial: Any, cur_iter: int, cur_rew: float | None) -> str:
            for milestone, recorded in self._rungs:
                if cur_iter < milestone or trial.trial_id in recorded or cur_rew is None:
                    continue
                costs, cost = self.costs[milestone], self.scheduler.cost
                better = sum(costs[t] for t, r in recorded.items() if r > cur_rew)
                go_on = not recorded or better + cost <= (sum(costs.values()) + cost) / self.rf
                recorded[trial.trial_id], costs[trial.trial_id] = cur_rew, cost
                return TrialScheduler.CONTINUE if go_on else TrialScheduler.STOP
            return TrialScheduler.CONTINUE

    class CostAsha(_Asha):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self._brackets = [Bracket(b, self) for b in self._brackets]
            self.cost = 1.0

        def _note(self, result: dict) -> None:
            self.cost = 1.0 if unit_costs else float(result["time_total_s"])

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            self._note(result)
            return super().on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
            self._note(result)
            super().on_trial_complete(tune_controller, trial, result)

    return CostAsha(**kwargs)


def method(seed: int, *, unit_costs: bool = False) -> sim.Method:
    """``sim.tuner_method`` with the cost-aware rung rule (or its unit-cost control)."""
    return sim.tuner_method(seed, scheduler=lambda **kw: _cost_asha(unit_costs, **kw))
