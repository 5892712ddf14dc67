"""Benchmarks of spot-tuner (`make bench`; see RESULTS.md)."""

import os

# The protocol runs one study per core (``--procs``); a BLAS or OpenMP pool per study on top
# oversubscribes the cores and inflates the CPU seconds reported for the model-based peers
# (MOBSTER: 15.3 s -> 12.3 s on one study, the same trace). Set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
