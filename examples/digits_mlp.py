"""Tune an MLP on scikit-learn's bundled digits data set; epochs are the fidelity.

Run it as a script (it joins a running Ray cluster if there is one, else starts one
on this machine), with `tuner run examples/digits_mlp.yaml`, or on a cluster with
`ray job submit --working-dir . -- python examples/digits_mlp.py`.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import tuner
from tuner.summary import best_lines, mlflow_lines

SPACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "search_spaces", "mlp.yaml")
_DATA: dict[str, np.ndarray] = {}


def _data() -> dict[str, np.ndarray]:
    if not _DATA:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.3,
                                                          random_state=0, stratify=y)
        _DATA.update(x_train=x_train, x_val=x_val, y_train=y_train, y_val=y_val)
    return _DATA


def _model(config: dict):
    from sklearn.neural_network import MLPClassifier

    sgd = config["solver"] == "sgd"
    return MLPClassifier(
        hidden_layer_sizes=(config["width"],) * config["depth"],
        activation=config["activation"], solver=config["solver"], alpha=config["alpha"],
        batch_size=config["batch_size"], learning_rate_init=config["learning_rate_init"],
        momentum=config.get("momentum", 0.9) if sgd else 0.9,
        nesterovs_momentum=config.get("nesterovs_momentum", True) if sgd else True,
        random_state=config.get("seed", 0))


def train(config: dict) -> None:
    """One epoch of partial_fit per iteration; checkpoint the model every epoch."""
    d = _data()
    state = tuner.load_state() or {"model": _model(config), "epoch": 0}
    model = state["model"]
    classes = np.unique(d["y_train"])
    while state["epoch"] < config.get("epochs", 30):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's convergence chatter
            model.partial_fit(d["x_train"], d["y_train"], classes=classes)
        time.sleep(config.get("epoch_sleep_s", 0.0))  # stand-in for an expensive epoch
        state["epoch"] += 1
        tuner.report({"val_accuracy": model.score(d["x_val"], d["y_val"]),
                      "train_loss": float(model.loss_)}, state=state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=24)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--storage-path", default="tuner_results")
    parser.add_argument("--name", default=None)
    parser.add_argument("--mlflow-uri", default=None, help="default: sqlite:///mlflow.db")
    parser.add_argument("--resume", metavar="PATH", help="continue the study at PATH")
    args = parser.parse_args()
    if args.resume:
        result = tuner.resume(args.resume, trainable=train)
    else:
        result = tuner.tune(
            train, space=SPACE, metric="val_accuracy", mode="max",
            num_samples=args.num_samples, max_t=args.max_epochs, grace_period=2,
            reduction_factor=3, max_failures=3, resources_per_trial={"cpu": 1},
            storage_path=args.storage_path, name=args.name, mlflow_uri=args.mlflow_uri,
            seed=0)
    print(result.table())
    why = result.why_no_best()  # e.g. every trial failed; see the errors in the table above
    if why is not None:
        raise SystemExit(f"no best trial: {why}")
    print("", *best_lines(result), sep="\n")
    print("\n".join(mlflow_lines(result)))  # the runs, and val_accuracy against cost

if __name__ == "__main__":
    main()
