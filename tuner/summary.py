"""Reading a study back: the per-trial table, the Pareto set of metric against dollars,
and its plot (matplotlib, imported only to draw)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tuner.record import finite

if TYPE_CHECKING:
    import pandas as pd

    from tuner.result import TuneResult


def cost_lines(result: TuneResult) -> list[str]:
    """The two headlines, side by side: what the trials cost and what the cluster cost while
    the study ran, each against the same at on-demand prices; then idle by node kind."""
    c = result.cost
    if not c:
        return []
    usd = money
    lines = [
        f"Trials cost   {usd(c['cost_usd'])} (on-demand {usd(c['on_demand_equiv_usd'])}, "
        f"saved {c['savings_pct']:.1f}%); {usd(c['wasted_usd'])} of it redone after restarts",
        f"Cluster bill  {usd(c['cluster_usd'])} while the study ran (on-demand "
        f"{usd(c.get('cluster_on_demand_usd', c['cluster_usd']))}, saved "
        f"{c.get('cluster_savings_pct', 0.0):.1f}%): head, workers and idle time included; "
        f"{usd(c['idle_usd'])} idle"]
    if result.idle_by_kind:
        lines.append("Idle share    " + ", ".join(
            f"{kind} {100 * share:.0f}% ({usd(idle)})"
            for kind, (idle, share) in result.idle_by_kind.items()))
    return lines


def money(usd: float) -> str:
    """Dollars as people read them: cents for amounts of a dollar or more, else four
    significant digits in plain decimals (``$0.0008197``), never ``8.197e-05``."""
    if not finite(usd):
        return "-"
    if abs(usd) >= 1:
        return f"${usd:,.2f}"
    if usd == 0:
        return "$0"
    digits = max(2, 3 - math.floor(math.log10(abs(usd))))
    return f"${usd:.{digits}f}"


def pareto(trials: pd.DataFrame, metric: str, mode: str) -> list[str]:
    """Trial ids no other trial beats on both cost (lower) and metric."""
    sign = 1 if mode == "max" else -1
    rows = [(r.trial_id, r.cost_usd, sign * r[metric]) for _, r in trials.iterrows()
            if finite(r.get("cost_usd")) and finite(r[metric])]
    front = []
    for tid, cost, value in rows:
        dominated = any(c <= cost and v >= value and (c < cost or v > value)
                        for t, c, v in rows if t != tid)
        if not dominated:
            front.append(tid)
    return sorted(front, key=lambda t: next(c for i, c, _ in rows if i == t))


def format_table(result: TuneResult) -> str:
    """The per-trial table with cost columns and each trial's error, best first, then the
    Pareto set, totals and how the study ended."""
    frame = result.trials
    if frame.empty:
        return f"{result.path}: no trials yet"
    rank = frame[result.metric].where(frame[result.metric].map(finite))  # NaN, inf: last
    frame = frame.loc[rank.sort_values(ascending=result.mode == "min", na_position="last").index]
    keys = sorted({k for cfg in frame["config"] for k in cfg})
    rows = [["trial", "status", "iters", result.metric, "cost_usd", "wasted_usd", "market",
             "restarts", *keys, "error"]]
    for _, t in frame.iterrows():
        rows.append([t["trial_id"], t["status"], str(t["iterations"]), _fmt(t[result.metric], 4),
                     _fmt(t["cost_usd"], 6), _fmt(t["wasted_usd"], 6), t["market"] or "-",
                     str(t["restarts"]), *(_fmt(t["config"].get(k)) for k in keys),
                     _first_line(t["error"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    counts = frame["status"].value_counts().to_dict()
    lines.append(f"{len(frame)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    odd = int((frame["iterations"].gt(0) & ~frame[result.metric].map(finite)).sum())
    if odd:
        lines.append(f"{odd} trials ended with a non-finite {result.metric} (NaN or infinite); "
                     f"they are never the best")
    front = pareto(frame, result.metric, result.mode)
    if front:
        lines.append(f"Pareto set ({result.metric} vs $): " + ", ".join(front))
    lines += cost_lines(result)
    if result.stop_reason == "budget":
        lines.append(f"The study finished: budget spent (stop reason budget, on the "
                     f"{result.budget_scope or 'cluster'}'s dollars)")
    elif result.stop_reason:
        lines.append(f"Stopped early: {result.stop_reason}")
    elif result.state != "finished":
        lines.append(f"The study did not finish; continue it with: tuner resume {result.path}")
    return "\n".join(lines)


def no_usable_metric(result: TuneResult) -> str | None:
    """Why no trial has a finite value of the study's metric (one line), or None if one has.

    A trial with iterations but no value reported only NaN or infinite ones: every result
    must carry the metric, and a number.
    """
    if result.best_metric is not None:
        return None
    frame, metric = result.trials, result.metric
    failed = frame["status"].eq("failed")
    silent = ~failed & frame["iterations"].eq(0)
    odd = ~failed & ~silent
    if failed.all() and len(frame):
        return f"every trial failed ({len(frame)}); see the errors in the table above"
    if silent.all():
        return f"no trial reported {metric}"
    if odd.all():
        return f"every value of {metric} was NaN or infinite"
    return (f"no trial reported a finite {metric}: {failed.sum()} failed, {silent.sum()} "
            f"reported nothing, {odd.sum()} reported only NaN or infinite values")


def plot_pareto(result: TuneResult, path: str) -> str:
    """Draw metric against $ per trial, completed and pruned apart, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = result.trials
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for status, marker, color in (("completed", "o", "tab:blue"), ("pruned", "x", "tab:orange"),
                                  ("failed", "s", "tab:red"), ("stopped", "^", "tab:gray")):
        part = frame[frame.status == status]
        part = part[part.cost_usd.notna() & part[result.metric].map(finite)]
        if len(part):
            ax.scatter(part.cost_usd, part[result.metric], marker=marker, color=color,
                       label=f"{status} ({len(part)})")
    front = frame.set_index("trial_id").loc[pareto(frame, result.metric, result.mode)]
    if len(front):
        ax.step(front.cost_usd, front[result.metric], where="post", color="black",
                linewidth=1, label="Pareto front")
    ax.set_xlabel("trial cost (USD)")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{result.metric} against cost, study {result.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _first_line(error: Any, width: int = 60) -> str:
    """An error's first line, cut to ``width`` characters (the table stays readable)."""
    lines = error.strip().splitlines() if isinstance(error, str) else []
    if not lines:
        return "-"
    return lines[0] if len(lines[0]) <= width else lines[0][:width - 3] + "..."


def _fmt(v: Any, digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if digits is not None else f"{v:.4g}"
    return str(v)
