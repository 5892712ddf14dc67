"""Shared fixtures: a real local Ray cluster and a real MLflow tracking server.

Both run as real processes on this machine (127.0.0.1), each with its own temp dir
and ports; the fixtures stop exactly what they started (never `ray stop`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from tuner.spot.local import free_port  # below the ephemeral range: no race with connections

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")




@pytest.fixture(scope="session")
def ray_cluster():
    """A real Ray cluster on this machine: a head node with 2 CPUs.

    Started with `ray.cluster_utils.Cluster` (processes owned by this test session)
    and connected to, so `tuner.tune` in tests runs on it; subprocess drivers join it
    through `ray_address`.
    """
    import ray
    from ray.cluster_utils import Cluster

    from tuner.ray_compat import prepare_local_cluster

    prepare_local_cluster()  # a token, as on a user's machine after `tuner cluster up`
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "temp_dir": temp_dir,
        "gcs_server_port": free_port(), "dashboard_agent_listen_port": free_port(),
        "object_store_memory": 200 * 1024 * 1024})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    deadline = time.monotonic() + 30
    while processes_of(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    shutil.rmtree(temp_dir, ignore_errors=True)
    assert not processes_of(temp_dir), f"Ray processes left behind: {processes_of(temp_dir)}"


def processes_of(marker: str) -> list[str]:
    """PIDs of processes whose command line names ``marker`` (e.g. a cluster's temp dir)."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return [p for p in out.split() if int(p) != os.getpid()]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with a sqlite store, as users deploy it."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root}/server.db",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        env=env, stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited: {(root / 'server.log').read_text()}") from None
            time.sleep(0.5)
    else:
        raise RuntimeError("mlflow server did not start in 120 s")
    yield url
    stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
