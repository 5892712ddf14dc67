"""Reading a study back: the per-trial table, the Pareto set of metric against dollars,
and its plot (matplotlib, imported only to draw)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from tuner.api import TuneResult


def pareto(trials: pd.DataFrame, metric: str, mode: str) -> list[str]:
    """Trial ids no other trial beats on both cost (lower) and metric."""
    sign = 1 if mode == "max" else -1
    rows = [(r.trial_id, r.cost_usd, sign * r[metric]) for _, r in trials.iterrows()
            if _number(r.get("cost_usd")) and _number(r[metric])]
    front = []
    for tid, cost, value in rows:
        dominated = any(c <= cost and v >= value and (c < cost or v > value)
                        for t, c, v in rows if t != tid)
        if not dominated:
            front.append(tid)
    return sorted(front, key=lambda t: next(c for i, c, _ in rows if i == t))


def format_table(result: TuneResult) -> str:
    """The per-trial table with cost columns, best first, then the Pareto set and totals."""
    frame = result.trials
    if frame.empty:
        return f"{result.path}: no trials yet"
    frame = frame.sort_values(result.metric, ascending=result.mode == "min", na_position="last")
    keys = sorted({k for cfg in frame["config"] for k in cfg})
    rows = [["trial", "status", "iters", result.metric, "cost_usd", "wasted_usd", "market",
             "restarts", *keys]]
    for _, t in frame.iterrows():
        rows.append([t["trial_id"], t["status"], str(t["iterations"]), _fmt(t[result.metric], 4),
                     _fmt(t["cost_usd"], 6), _fmt(t["wasted_usd"], 6), t["market"] or "-",
                     str(t["restarts"]), *(_fmt(t["config"].get(k)) for k in keys)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    counts = frame["status"].value_counts().to_dict()
    lines.append(f"{len(frame)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    front = pareto(frame, result.metric, result.mode)
    if front:
        lines.append(f"Pareto set ({result.metric} vs $): " + ", ".join(front))
    c = result.cost
    if c:
        lines.append(
            f"Cost: ${c['cost_usd']:.6f} spent (${c['wasted_usd']:.6f} wasted), "
            f"${c['idle_usd']:.6f} idle, cluster ${c['cluster_usd']:.6f}; on-demand equivalent "
            f"${c['on_demand_equiv_usd']:.6f} (savings {c['savings_pct']:.1f}%)")
    if result.stop_reason:
        lines.append(f"Stopped early: {result.stop_reason}")
    return "\n".join(lines)


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
        part = part[part.cost_usd.notna() & part[result.metric].notna()]
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


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any, digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if digits is not None else f"{v:.4g}"
    return str(v)
