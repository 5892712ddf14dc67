"""More seeds for the slow peers' held-out studies than `make bench` runs in its hour.

    python -m benchmarks.more_seeds "Syne Tune MOBSTER" --seeds 10

runs the peer's held-out studies (K = 4 unless ``--workers``, 20 FTE: the protocol's
budget for slow peers) on seeds 0 to 9, skipping those results/runs.json.gz already holds,
and saves them there after each seed (`protocol.run_jobs`). `make bench` and `python -m benchmarks.run --reuse`
then read every seed it holds for all held-out tasks (``protocol.recorded_seeds``), so the
peer is compared on them. The studies are the protocol's: same simulator, tasks, budget and
reference pool.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import protocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="+", choices=protocol.SLOW_PEERS, metavar="METHOD",
                        help=f"one of: {', '.join(protocol.SLOW_PEERS)}")
    parser.add_argument("--seeds", type=int, default=protocol.FULL["seeds"],
                        help="run seeds 0 .. SEEDS-1 (default: the protocol's)")
    parser.add_argument("--workers", type=int, default=protocol.FULL["workers"][0])
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args(argv)
    from benchmarks.lcbench import shared

    protocol.load_cache()
    odd = [t for i, t in enumerate(shared().tasks) if i % 2 == 1]
    ref = protocol.reference(odd)
    for method in args.methods:
        for seed in range(args.seeds):
            started = time.perf_counter()
            jobs = [(method, t, seed, args.workers, protocol.GOAL_BUDGET * ref[t]["fte_s"],
                     ref[t]["fte_s"]) for t in odd]
            protocol.run_jobs(jobs, args.procs)  # saves what it ran
            print(f"{method}, seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
