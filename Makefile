# spot-tuner. `make demo` runs a real study; `make test` runs the suite. Both set up .venv
# with the versions pinned in constraints.txt (`make lock` refreshes it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install demo test test-fast lint lock ui dashboard ui-test clean cluster-local bench bench-quick bench-choice bench-bounds peers-env

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,examples,ui,bench]'
	touch $(STAMP)

install: $(STAMP)

# The demo runs on a local spot cluster (two spot workers, one on-demand) whose simulated
# market preempts nodes at HAZARD per node-hour on a 60x clock; the cluster stops after.
HAZARD ?= 0.6
demo: $(STAMP)
	@rm -f .tuner-cluster.json
	@$(BIN)/tuner cluster up --local --hazard $(HAZARD) --address-file .tuner-cluster.json \
	    > tuner-cluster.log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -f .tuner-cluster.json' EXIT; \
	while [ ! -f .tuner-cluster.json ]; do \
	    kill -0 $$pid 2>/dev/null || { cat tuner-cluster.log; exit 1; }; sleep 1; done; \
	export RAY_ADDRESS=$$($(BIN)/python -c "import json; print(json.load(open('.tuner-cluster.json'))['address'])"); \
	$(BIN)/python examples/digits_mlp.py --num-samples 24 --max-epochs 30; rc=$$?; \
	echo "spot market events: $$(grep -c 'cluster\] killed' tuner-cluster.log) node(s) preempted (tuner-cluster.log)"; \
	exit $$rc

test: $(STAMP)
	$(BIN)/python -m pytest tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check tuner tests examples benchmarks
	$(BIN)/mypy

# The newest versions pyproject.toml allows, resolved in a scratch venv, written to
# constraints.txt. Run `make test` on the result before committing it.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev,examples,ui,bench]'
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable | \
	    grep -vE '^(spot-tuner|pip|setuptools|wheel)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv

# The MLflow UI on MLFLOW_DB (default: the demo's store) at http://127.0.0.1:5000, the address
# the links tuner prints point at: one web worker, none of MLflow's job-execution workers.
MLFLOW_DB ?= mlflow.db
ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
	    --backend-store-uri sqlite:///$(abspath $(MLFLOW_DB)) --host 127.0.0.1 --port 5000 --workers 1

# optuna-dashboard on a study's Optuna journal: make dashboard STUDY=tuner_results/<name>
dashboard: $(STAMP)
	@test -n "$(STUDY)" || { echo "usage: make dashboard STUDY=tuner_results/<name>" >&2; exit 2; }
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[ui]'
	$(BIN)/tuner dashboard $(STUDY)

# The MLflow UI in headless Chromium (Debian's, installed here when missing and root): runs
# a small study (or takes STUDY=tuner_results/<name>), serves its store, follows the links
# tuner prints; screenshots in ui-test/.
ui-test: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[ui]'
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    apt-get install -y -qq chromium >/dev/null; } || \
	    { echo "ui-test needs Chromium: apt-get install chromium" >&2; exit 2; }
	$(BIN)/python tests/browser/check_ui.py --out ui-test $(if $(STUDY),--study $(STUDY))

# DEHB and Syne Tune's MOBSTER / Hyper-Tune need numpy < 1.27: the protocol runs them in
# this second environment (benchmarks/pinned_peers.py), pinned by benchmarks/peers-constraints.txt.
PEERS_VENV  := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
$(PEERS_STAMP): benchmarks/peers-constraints.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet -c benchmarks/peers-constraints.txt \
	    dehb 'syne-tune[gpsearchers,kde]' onnxruntime xgboost scikit-learn
	touch $(PEERS_STAMP)

peers-env: $(PEERS_STAMP)

# The LCBench protocol on the held-out tasks (benchmarks/protocol.py) and the real-Ray
# agreement check; ARGS=--workers=4,1 adds K = 1, ARGS=--system the system benchmarks
# (overhead, spot, real compute). Writes benchmarks/RESULTS.md (bench-quick:
# benchmarks/results/quick/RESULTS.md).
bench: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python -m benchmarks.run $(ARGS)

bench-quick: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python -m benchmarks.run --quick $(ARGS)

# Choosing defaults: the candidates of benchmarks/protocol.py (CANDIDATES) and the peers on
# the even tasks only; the rule's pick and every round's table in benchmarks/results/choice/.
bench-choice: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python -m benchmarks.protocol --choice $(ARGS)
	PYTHONPATH=. $(BIN)/python benchmarks/results/choice/candidates.py

# Where each method's best configurations lie (at the ends of the ranges, where the surrogate
# extrapolates, or inside): the held-out studies not in benchmarks/results/bounds.json yet.
bench-bounds: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python -m benchmarks.bounds $(ARGS)

cluster-local: $(STAMP)
	$(BIN)/tuner cluster up --local --hazard $(HAZARD) --dashboard

clean:
	rm -rf tuner_results mlflow.db mlartifacts mlruns tuner-cluster.log ui-test
