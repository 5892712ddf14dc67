"""Reading a study back: the per-trial table, the Pareto set of metric against dollars,
and its plot (matplotlib, imported only to draw)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError
from tuner.record import finite
from tuner.search_space import parse_space

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
    if c.get("shared_with_studies"):
        others = int(c["shared_with_studies"])
        lines.append(f"              this study's share of a cluster shared with {others} other "
                     f"stud{'y' if others == 1 else 'ies'}: its trials' node time, plus idle "
                     f"time split evenly between the studies running")
    if result.idle_by_kind:
        lines.append("Idle share    " + ", ".join(
            f"{kind} {100 * share:.0f}% ({usd(idle)})"
            for kind, (idle, share) in result.idle_by_kind.items()))
    return lines


def columns(rows: list[list[str]]) -> list[str]:
    """Rows of text cells as lines of left-aligned columns two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def count(n: int, noun: str) -> str:
    """``1 trial``, ``3 trials``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
    """Trial ids no other trial beats on both cost (lower) and metric, among the trials that
    could be the best (``StudyRecord.best``): the completed ones, or, if none completed,
    those that did not fail. A pruned trial is cheap because it stopped early; its value is
    not a trained model's."""
    sign = 1 if mode == "max" else -1
    if "status" in trials:
        done = trials["status"].eq("completed")
        trials = trials[done] if done.any() else trials[trials["status"].ne("failed")]
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
        return "\n".join([f"{result.path}: no trials yet", *_ending(result)])
    rank = frame[result.metric].where(frame[result.metric].map(finite))  # NaN, inf: last
    frame = frame.loc[rank.sort_values(ascending=result.mode == "min", na_position="last").index]
    keys = sorted({k for cfg in frame["config"] for k in cfg})
    rows = [["trial", "status", "iters", result.metric, "cost_usd", "wasted_usd", "market",
             "restarts", *keys, "error"]]
    for _, t in frame.iterrows():
        rows.append([t["trial_id"], t["status"], str(t["iterations"]), _fmt(t[result.metric], 4),
                     money(t["cost_usd"]), money(t["wasted_usd"]), _text(t["market"]),
                     str(t["restarts"]), *(_fmt(t["config"].get(k)) for k in keys),
                     _first_line(t["error"])])
    lines = columns(rows)
    counts = frame["status"].value_counts().to_dict()
    lines.append(f"{count(len(frame), 'trial')}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    odd = int((frame["iterations"].gt(0) & ~frame[result.metric].map(finite)).sum())
    if odd:
        lines.append(f"{count(odd, 'trial')} ran iterations without a finite {result.metric} "
                     f"(NaN, infinite or not reported); they are never the best")
    front = pareto(frame, result.metric, result.mode)
    if front:
        lines.append(f"Pareto set ({result.metric} vs $): " + ", ".join(front))
    lines += cost_lines(result)
    return "\n".join(lines + _ending(result))


def _ending(result: TuneResult) -> list[str]:
    """How the study ended, or how to continue it."""
    if result.stop_reason == "budget":
        whose = "trials'" if result.budget_scope == "trials" else "cluster's"
        lines = [f"The study finished: budget spent (stop reason budget, on the {whose} "
                 f"dollars)"]
        if result.trials.empty or not result.trials["iterations"].gt(0).any():
            lines.append("No trial finished an iteration within it: the bill from Ray Tune's "
                         "start, while the trials started, spent it all; a budget must cover "
                         "that too")
        return lines
    if result.stop_reason == "metric":
        return [f"The study stopped: a trial reported without its metric {result.metric!r}; "
                f"once the trainable reports it, continue with: tuner resume {result.path} "
                f"(a study's metric cannot change: for another, start a new study)"]
    if result.state == "running":  # a live driver holds it (TuneResult.load asked its lock)
        return ["The study is running: its driver goes on; report again for later figures"]
    if result.state == "finished":
        return []
    waiting = result.num_samples - len(result.trials)
    unfinished = (f"The study did not finish ({waiting} of its {result.num_samples} trials not "
                  f"started)" if waiting > 0 else "The study did not finish")
    if not result.trainable:
        return [f"{unfinished}; its trainable is not importable by name (defined "
                f"in __main__), so continue it from Python: "
                f"tuner.resume({result.path!r}, trainable=your_function)"]
    return [f"{unfinished}; continue it with: tuner resume {result.path}"]


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
        return (f"every trial failed ({len(frame)}); each one's error is in the table and on "
                f"its MLflow run (tag tuner.error)")
    if silent.all():
        return f"no trial reported {metric}"
    if odd.all():
        return f"every value of {metric} was NaN or infinite"
    return (f"no trial reported a finite {metric}: {failed.sum()} failed, {silent.sum()} "
            f"reported nothing, {odd.sum()} reported only NaN or infinite values")


def plot_pareto(result: TuneResult, path: str) -> str:
    """Draw metric against $ per trial: the marker says how it ended (completed, pruned, ...),
    the colour on which market it ran (spot, on-demand); the front joined, the best labelled,
    dollars on the axis as :func:`money` writes them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    frame = result.trials
    frame = frame[frame.cost_usd.map(finite) & frame[result.metric].map(finite)]
    market = frame.market.where(frame.market.isin(list(_MARKET_COLORS)), "unknown")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    handles = []
    for status, marker in _STATUS_MARKERS.items():
        for kind, color in _MARKET_COLORS.items():
            here = frame[(frame.status == status) & (market == kind)]
            if len(here):
                ax.scatter(here.cost_usd, here[result.metric], marker=marker, color=color, s=40,
                           alpha=0.85, zorder=3)
        if (frame.status == status).any():
            handles.append(Line2D([], [], linestyle="", marker=marker, color="dimgray",
                                  label=f"{status} ({int((frame.status == status).sum())})"))
    for kind, color in _MARKET_COLORS.items():
        if (market == kind).any():
            handles.append(Line2D([], [], linestyle="", marker="s", color=color,
                                  label=f"{kind} ({int((market == kind).sum())})"))
    front = frame.set_index("trial_id").loc[pareto(frame, result.metric, result.mode)]
    if len(front):
        ax.step(front.cost_usd, front[result.metric], where="post", color="black",
                linewidth=1, zorder=2)
        handles.append(Line2D([], [], color="black", linewidth=1, label="Pareto front"))
    best = frame[frame.trial_id == result.best_trial_id]
    if len(best):
        row = best.iloc[0]
        ax.scatter([row.cost_usd], [row[result.metric]], s=220, facecolors="none",
                   edgecolors="crimson", linewidths=1.8, zorder=4)
        ax.annotate(f"best: {row.trial_id}\n{result.metric} {row[result.metric]:.4g}, "
                    f"{money(row.cost_usd)}", (row.cost_usd, row[result.metric]),
                    xytext=(-12, -10), textcoords="offset points", ha="right", va="top",
                    fontsize=8, color="crimson",
                    bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "crimson", "lw": 0.6},
                    arrowprops={"arrowstyle": "-", "color": "crimson", "lw": 0.8})
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, min_n_ticks=3))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _tick(x)))
    ax.set_xlim(left=0)
    ax.set_xlabel("trial cost (US dollars)")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{result.metric} against cost, study {result.name}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


_STATUS_MARKERS = {"completed": "o", "pruned": "x", "failed": "s", "stopped": "^",
                   "interrupted": "v", "running": "."}
_MARKET_COLORS = {"spot": "tab:green", "on-demand": "tab:purple", "unknown": "tab:gray"}


def _tick(usd: float) -> str:
    """An axis tick in dollars: :func:`money`, without trailing zeros (``$0.000025``)."""
    text = money(usd)
    return text.rstrip("0").rstrip(".") if "." in text and abs(usd) < 1 else text


def pareto_note(result: TuneResult, urls: dict[str, str]) -> str:
    """The study run's description in MLflow (markdown): links to the cost chart and the
    runs, the Pareto set (trial, metric, dollars, market) and the totals."""
    lines = [f"**{result.name}**: {result.metric} ({result.mode}) against trial cost"]
    if urls:
        lines.append(" · ".join(f"[{label}]({urls[key]})" for key, label in (
            ("cost", f"{result.metric} against cost (chart)"), ("runs", "all runs"))
            if key in urls))
    frame = result.trials
    front = pareto(frame, result.metric, result.mode) if not frame.empty else []
    if front:
        rows = frame.set_index("trial_id").loc[front]
        lines += ["", f"Pareto set ({len(front)} of {len(frame)} trials, cheapest first):", "",
                  f"| trial | {result.metric} | dollars | market | status |",
                  "|---|---:|---:|---|---|"]
        for trial_id, t in rows.head(_NOTE_ROWS).iterrows():
            best = " (best)" if trial_id == result.best_trial_id else ""
            lines.append(f"| {trial_id}{best} | {t[result.metric]:.4g} | {money(t.cost_usd)} | "
                         f"{_text(t.market)} | {t.status} |")
        if len(rows) > _NOTE_ROWS:
            lines.append(f"| ... {len(rows) - _NOTE_ROWS} more (tuner report) | | | | |")
    if result.cost:
        lines += ["", *(f"{line}  " for line in cost_lines(result))]
    return "\n".join(lines)[:7999]  # MLflow's limit on a tag's value: 8000 characters


_NOTE_ROWS = 40


def best_lines(result: TuneResult) -> list[str]:
    """The best trial and its configuration (``result`` has one: see ``no_usable_metric``),
    and why trials the table lists above it are not the best."""
    frame = result.trials
    best = frame[frame["trial_id"] == result.best_trial_id].iloc[0]
    lines = [f"Best {result.metric}: {result.best_metric:.6g} (trial {result.best_trial_id}, "
             f"{best['status']}, {count(int(best['iterations']), 'iteration')})"]
    values = frame[result.metric].where(frame[result.metric].map(finite))
    better = values > result.best_metric if result.mode == "max" else values < result.best_metric
    above = frame[better.fillna(False) & frame["status"].ne("completed")]
    if best["status"] == "completed" and len(above):
        lines.append(f"  ({count(len(above), 'trial')} listed above it "
                     f"{'were' if len(above) > 1 else 'was'} stopped early, at "
                     f"{int(above['iterations'].max())} iterations at most: a value measured "
                     f"at fewer iterations does not count as best)")
    # a value at the end of a range says "widen it" only once measured over the whole run
    edges = _edge_lines(result) if best["status"] == "completed" else []
    return [*lines, f"Best config: {result.best_config}", *edges]


def _edge_lines(result: TuneResult) -> list[str]:
    """Which of the best configuration's values sit at an end of their searched range: the
    optimum may lie beyond it, and only a wider range can find it."""
    config, spec = result.best_config, result.space  # spec: the space as written
    try:
        ends = parse_space(spec).at_edge(config) if config and spec else {}
    except ConfigError:  # a record of a space this version no longer reads
        return []
    if not config or not ends:
        return []
    values = ", ".join(f"{name}={config[name]:.4g} ({end} end of {spec[name]['low']:g}.."
                       f"{spec[name]['high']:g})" for name, end in ends.items())
    return [f"  at the end of the searched range: {values}; better values may lie beyond it: "
            f"widen the range in the search space where the model allows"]


def mlflow_lines(result: TuneResult) -> list[str]:
    """Where the study is in MLflow, and the links to open: its runs, and its trials'
    metric against dollars (read from the store; none when it cannot be read)."""
    from tuner.mlflow_ui import UI_ADDRESS
    from tuner.tracking import masked, study_urls

    uri = masked(result.mlflow_uri)
    lines = [f"MLflow: parent run {result.parent_run_id} in {uri}"]
    urls = study_urls(result.mlflow_uri, result.parent_run_id) if result.parent_run_id else {}
    if not uri.startswith(("http://", "https://")):
        lines.append(f"  start the UI: mlflow ui --backend-store-uri {uri} --port "
                     f"{UI_ADDRESS.rsplit(':', 1)[1]}")
    if "cost" in urls:
        lines.append(f"  {result.metric} against cost: {urls['cost']}")
    if "runs" in urls:
        lines.append(f"  runs: {urls['runs']}")
    return lines


def _text(value: Any) -> str:
    """A text cell: "-" for nothing (None, or pandas' NaN for a missing string)."""
    return value if isinstance(value, str) and value else "-"


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
