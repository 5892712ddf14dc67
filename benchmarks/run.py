"""`make bench` / `make bench-quick`: run the benchmarks, print their tables, and rewrite
benchmarks/RESULTS.md with the date, the machine, the versions and the figures."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from importlib.metadata import version

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import overhead  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (a few minutes)")
    args = parser.parse_args()
    trials, repeats = (100, 3) if args.quick else (500, 3)
    load = os.getloadavg()
    rows = overhead.main(["--trials", str(trials), "--repeats", str(repeats)])
    command = f"make {'bench-quick' if args.quick else 'bench'}"
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        "every figure below comes from that run.",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, load average before the run "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        f"- Python {platform.python_version()}; ray {version('ray')}, optuna {version('optuna')}, "
        f"mlflow {version('mlflow')}",
        "",
        f"## Overhead ({trials} trivial trials, one report each; median of {repeats} "
        "alternated runs)",
        "",
        "`tuner.tune` (our OptunaSearch subclass, ASHA, study record, Optuna journal, MLflow "
        "parent and child runs, cost meter) against Ray Tune wired by hand with the same "
        "searcher, scheduler and actor reuse. Target: ratio <= 1.1.",
        "",
        "| method | median s | trials/s | ratio |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {r['method']} | {r['median_s']:.1f} | {r['trials_per_s']:.1f} | {r['ratio']:.2f} |"
          for r in rows],
        "",
        "Not yet measured here: dollars to accuracy on LCBench, real-compute and spot-economics "
        "benchmarks.",
        "",
    ]
    with open(os.path.join(HERE, "RESULTS.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"\nwrote {os.path.join(HERE, 'RESULTS.md')}")


if __name__ == "__main__":
    main()
