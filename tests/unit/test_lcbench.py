"""The benchmarks' LCBench evaluator (onnxruntime on the shipped ONNX surrogate) against
the 80 values the reference implementation (yahpo-gym 1.0.2) computed on the same model.
Nothing is faked: the real model runs on the CPU."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from benchmarks.lcbench import EPOCHS, HERE, OUTPUTS, LCBench

CASES = json.load(open(os.path.join(HERE, "reference_values.json"), encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def bench() -> LCBench:
    return LCBench()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['config']['OpenML_task_id']}"
                         f"-e{c['config']['epoch']}")
def test_reproduces_the_reference_implementation_to_float32(bench, case):
    got = bench.predict([case["config"]])[0]  # one row per run, as the reference evaluates
    for key in OUTPUTS:
        assert np.float32(got[key]) == np.float32(case["outputs"][key]), key


def test_a_curve_is_the_52_epochs_of_one_config(bench):
    config = CASES[0]["config"]
    curve = bench.curve(config["OpenML_task_id"], config)
    assert len(curve.time) == len(curve.val_accuracy) == EPOCHS
    by_epoch = {c["config"]["epoch"]: c["outputs"] for c in CASES[:4]}
    for epoch, out in by_epoch.items():  # batched inference: equal to float32 noise
        assert curve.val_accuracy[epoch - 1] == pytest.approx(out["val_accuracy"], rel=1e-4)
    assert curve.seconds_to(EPOCHS) >= curve.seconds_to(1) > 0


def test_an_unknown_task_names_the_valid_ones(bench):
    with pytest.raises(ValueError, match="3945"):
        bench.predict([{**CASES[0]["config"], "OpenML_task_id": "42"}])
