"""What a study will cost before it runs: ASHA's expected work times a price.

With grace period ``g``, reduction factor ``eta`` and ``max_t``, ASHA's rungs stand at
``g, g*eta, g*eta^2, ...`` below ``max_t``. Asynchronous ASHA does not keep exactly
``1/eta`` of the trials at a rung: a trial goes on unless its value is below the
``1 - 1/eta`` quantile of the values recorded there before it, so the first trials at a
rung always go on, and a study of a few dozen trials runs 1.5-2x the iterations that
``1/eta`` predicts. The work is therefore simulated under that very rule
(:func:`expected_iterations`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuner.config import StudySettings
from tuner.cost.catalog import Market, PriceCatalog
from tuner.errors import ConfigError


@dataclass(frozen=True)
class Estimate:
    iterations: float  # all trials together
    seconds_per_iteration: float
    concurrency: int
    wall_seconds: float
    usd: dict[str, float]  # market -> the trials' dollars
    instance_type: str
    region: str
    workers: int = 1  # nodes of instance_type the concurrent trials fill
    cluster_usd: dict[str, float] | None = None  # market of the workers -> the bill: workers
    # and an on-demand head of instance_type, for the study's wall time


def rungs(max_t: int, grace_period: int, reduction_factor: float) -> list[float]:
    out, r = [], float(grace_period)
    while r < max_t:
        out.append(r)
        r *= reduction_factor
    return out + [float(max_t)]


def expected_iterations(num_samples: int, max_t: int, grace_period: int,
                        reduction_factor: float, seed: int = 0, draws: int | None = None) -> float:
    """All the trials' iterations under ASHA's asynchronous rule (Ray's ``cutoff``: the
    ``1 - 1/eta`` percentile, linearly interpolated, of the values recorded at the rung;
    a trial below it stops there), averaged over simulated studies.

    The trials reach the rungs one after another, and a trial ranks the same at every rung
    (its values are one random draw): concurrency and curves that cross make the real
    figure somewhat lower (a 24-trial digits study ran 204 iterations; here 219, and 123
    at ``1/eta``). Beyond 20,000 trials the first 20,000's mean per trial is scaled up
    (it has converged). Deterministic for a given ``seed`` (and ``draws``)."""
    import bisect

    import numpy as np

    milestones = rungs(max_t, grace_period, reduction_factor)[:-1]
    simulated = min(num_samples, 20_000)
    draws = draws or max(10, min(200, 20_000 // simulated))
    rng = np.random.default_rng(seed)
    q = 1 - 1 / reduction_factor
    total = 0.0
    for _ in range(draws):
        recorded: list[list[float]] = [[] for _ in milestones]
        for value in rng.random(simulated).tolist():
            reached = float(max_t)
            for rung, seen in zip(milestones, recorded, strict=True):
                if seen:
                    pos = q * (len(seen) - 1)  # numpy's linear percentile
                    low = int(pos)
                    high = min(low + 1, len(seen) - 1)
                    cutoff = seen[low] + (seen[high] - seen[low]) * (pos - low)
                    stop = value < cutoff
                else:
                    stop = False
                bisect.insort(seen, value)
                if stop:
                    reached = rung
                    break
            total += reached
    return total / draws * num_samples / simulated


def estimate(settings: StudySettings, seconds_per_iteration: float,
             catalog: PriceCatalog | None = None, source: str = "estimate",
             workers: int | None = None) -> Estimate:
    """The study's iterations, time and dollars on ``settings.default_instance_type``, with
    ``workers`` nodes of it (default: as many as ``max_concurrent_trials`` fills, or one);
    resources that do not fit one such node are refused, naming ``source``."""
    catalog = catalog or PriceCatalog.load(settings.prices)
    price = catalog.get(settings.default_instance_type, settings.region)
    resources = settings.resources_per_trial
    gpus, cpus = float(resources.get("gpu", 0.0)), float(resources.get("cpu", 1.0))
    if (gpus and gpus > price.gpus) or cpus > price.vcpus:
        raise ConfigError(source, "resources_per_trial", f"{dict(resources)} does not fit one "
                          f"{price.instance_type} ({price.vcpus:g} vCPUs, {price.gpus:g} GPUs), "
                          f"the instance type priced; ask for what one node has, or set "
                          f"default_instance_type to a type that has it (`tuner prices` lists "
                          f"them)")
    share = gpus / price.gpus if gpus else cpus / max(price.vcpus, 1)
    slots = max(1, math.floor(1 / share)) if share else 1
    concurrency = min(settings.num_samples,
                      settings.max_concurrent_trials or slots * (workers or 1))
    iterations = expected_iterations(settings.num_samples, settings.max_t, settings.first_rung,
                                     settings.reduction_factor)
    seconds = iterations * seconds_per_iteration
    usd = {m.value: seconds * price.hourly(m) / 3600 * share for m in Market}
    wall = seconds / concurrency
    workers = workers or max(1, math.ceil(concurrency * share))
    head = wall * price.hourly(Market.ON_DEMAND) / 3600
    cluster = {m.value: head + workers * wall * price.hourly(m) / 3600 for m in Market}
    return Estimate(iterations, seconds_per_iteration, concurrency, wall, usd,
                    price.instance_type, price.region, workers, cluster)


def duration(seconds: float) -> str:
    """A study's length as a person reads it: seconds under two minutes, minutes under two
    hours, hours beyond."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def measured_seconds_per_iteration(meter_data: dict) -> float | None:
    """Mean seconds a trial held its node per iteration, from a study's record."""
    spans = [end - start for node in meter_data.get("nodes", {}).values()
             for start, end, _ in node["busy"]]
    return sum(spans) / len(spans) if spans else None
