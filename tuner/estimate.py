"""What a study will cost before it runs: ASHA's expected work times a price.

With ``n`` trials, grace period ``g``, reduction factor ``eta`` and ``max_t``, ASHA's
rungs stand at ``g, g*eta, g*eta^2, ...`` below ``max_t``; about ``1/eta`` of the
trials reaching a rung go on to the next. A trial is expected to run::

    g + (r1 - g)/eta + (r2 - r1)/eta^2 + ... + (max_t - r_last)/eta^L   iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuner.config import StudySettings
from tuner.cost.catalog import Market, PriceCatalog


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


def iterations_per_trial(max_t: int, grace_period: int, reduction_factor: float) -> float:
    total, previous = 0.0, 0.0
    for k, rung in enumerate(rungs(max_t, grace_period, reduction_factor)):
        total += (rung - previous) / reduction_factor ** k
        previous = rung
    return total


def estimate(settings: StudySettings, seconds_per_iteration: float,
             catalog: PriceCatalog | None = None) -> Estimate:
    catalog = catalog or PriceCatalog.load(settings.prices)
    price = catalog.get(settings.default_instance_type, settings.region)
    resources = settings.resources_per_trial
    gpus, cpus = float(resources.get("gpu", 0.0)), float(resources.get("cpu", 1.0))
    share = gpus / price.gpus if gpus and price.gpus else min(1.0, cpus / max(price.vcpus, 1))
    slots = max(1, math.floor(1 / share)) if share else 1
    concurrency = min(settings.num_samples, settings.max_concurrent_trials or slots)
    iterations = settings.num_samples * iterations_per_trial(
        settings.max_t, settings.first_rung, settings.reduction_factor)
    seconds = iterations * seconds_per_iteration
    usd = {m.value: seconds * price.hourly(m) / 3600 * share for m in Market}
    wall = seconds / concurrency
    workers = max(1, math.ceil(concurrency * share))
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
