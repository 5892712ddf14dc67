import time

import pytest

from tests.conftest import free_port
from tuner.cost.nodes import labels_for


@pytest.fixture
def study_dir(tmp_path, monkeypatch):
    """Each test runs in its own working directory (results, mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def labelled_nodes(ray_cluster):
    """A spot c5.xlarge and an on-demand m5.large, 2 CPUs each, with their launch times."""
    launched = int(time.time())
    nodes = {}
    for market, kind in (("spot", "c5.xlarge"), ("on-demand", "m5.large")):
        node = ray_cluster.add_node(
            num_cpus=2, resources={"labelled": 2}, dashboard_agent_listen_port=free_port(),
            labels=labels_for(market, kind, "us-east-1", "us-east-1a", launched_at=launched))
        nodes[node.node_id] = (market, kind, node)
    ray_cluster.wait_for_nodes()
    yield launched, nodes
    for _, _, node in nodes.values():
        ray_cluster.remove_node(node)
