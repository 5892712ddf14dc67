"""Helpers for tests that run the local spot cluster as a user does (`tuner cluster up`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import processes_of

BIN = os.path.dirname(sys.executable)


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no RAY_AUTH_MODE (the product must find the token
    `tuner cluster up` made by itself), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return {**env, **extra}


def counting_trainable(iterations: int, sleep_s: float, checkpoint_every: int = 1) -> str:
    """Source of a module whose ``train`` counts to ``iterations``, sleeping ``sleep_s`` per
    step, reporting ``acc = q * step / iterations`` and resuming from its checkpoint."""
    return f'''
import time
import tuner

def train(config):
    state = tuner.load_state() or {{"it": 0}}
    while state["it"] < {iterations}:
        time.sleep({sleep_s})
        state["it"] += 1
        tuner.report({{"acc": config["q"] * state["it"] / {iterations}}}, state=state,
                     checkpoint_every={checkpoint_every})
'''


def start_cluster(tmp_path, *args, program=None, env=None):
    """`tuner cluster up --local --address-file F *args` (or ``program``, a command that
    takes the same two first arguments), up once F is written; ``env`` as ``user_env``'s."""
    address_file = tmp_path / "cluster.json"
    proc = subprocess.Popen(
        [*(program or [os.path.join(BIN, "tuner"), "cluster", "up", "--local"]),
         "--address-file", str(address_file), *args], env=user_env(**(env or {})),
        stdout=open(tmp_path / "cluster.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + 120
    while not address_file.exists():
        assert proc.poll() is None, (tmp_path / "cluster.log").read_text()
        assert time.monotonic() < deadline, "the local cluster did not come up"
        time.sleep(0.5)
    return proc, json.loads(address_file.read_text())


def stop_cluster(proc, info):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return processes_of(info["temp_dir"])
