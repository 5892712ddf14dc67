"""cluster/aws-spot.yaml: Ray accepts it, our node_config check catches typos, and Ray's
own AWS node provider launches its spot worker type as a spot instance.

Faked: AWS, by moto in-process (EC2, IAM). Ray's bootstrap waits 15 s twice for IAM
roles to propagate; the test skips those waits (time.sleep in Ray's AWS config module).
"""

from __future__ import annotations

import copy
import os
import shutil

import boto3
import pytest
import yaml
from moto import mock_aws

from tuner.errors import ConfigError
from tuner.spot.cluster_config import check_cluster_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "cluster", "aws-spot.yaml")


def test_ray_and_our_checks_accept_the_shipped_config():
    config = check_cluster_config(CONFIG)
    types = config["available_node_types"]
    assert types["head"]["resources"] == {"CPU": 0}
    spot = [t for t in types.values()
            if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    assert len({t["node_config"]["InstanceType"] for t in spot}) >= 2
    assert types["on_demand_fallback"]["priority"] < min(t["priority"] for t in spot)
    assert "," in config["provider"]["availability_zone"]  # two zones
    assert all("tuner.io/market" in t["labels"] for t in types.values())


@pytest.mark.parametrize("old,new,message", [
    ("MarketType: spot", "MarketType: spott",
     "spot_c5.node_config.InstanceMarketOptions.MarketType: 'spott' is not one of"),
    ("InstanceMarketOptions:", "InstanceMarketOption:",
     "spot_c5.node_config.InstanceMarketOption: not a RunInstances parameter "
     "(did you mean 'InstanceMarketOptions'?)"),
    ("tuner.io/market: spot, tuner.io/instance-type: c5.xlarge",
     "tuner.io/market: on-demand, tuner.io/instance-type: c5.xlarge",
     "spot_c5.labels.tuner.io/market: says 'on-demand' but node_config launches spot"),
    ("VolumeSize: 64", "VolumeSize: big", "Ebs.VolumeSize: must be a whole number"),
])
def test_typos_in_node_config_are_named_with_a_fix(tmp_path, monkeypatch, old, new, message):
    monkeypatch.chdir(tmp_path)  # a user in the directory of their copy
    text = open(CONFIG).read()
    assert old in text
    path = tmp_path / "aws-spot.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        check_cluster_config(str(path))
    assert str(info.value).startswith("aws-spot.yaml: available_node_types.")
    assert message in str(info.value)


def test_rays_aws_provider_launches_a_spot_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # Ray writes the key pair's .pem there
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import ray.autoscaler._private.aws.config as aws_config
    from ray.autoscaler._private.providers import _get_node_provider
    from ray.autoscaler._private.util import prepare_config

    monkeypatch.setattr(aws_config.time, "sleep", lambda s: None)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        ami = ec2.describe_images()["Images"][0]["ImageId"]  # moto's AMIs, not Ubuntu's
        config = prepare_config(yaml.safe_load(open(CONFIG)))
        for node_type in config["available_node_types"].values():
            node_type["node_config"]["ImageId"] = ami
        config = aws_config.bootstrap_aws(config)
        provider = _get_node_provider(config["provider"], config["cluster_name"])
        for name in ("spot_c5", "on_demand_fallback"):
            provider.create_node(copy.deepcopy(config["available_node_types"][name]["node_config"]),
                                 {"ray-node-kind": "worker", "ray-user-node-type": name}, 1)
        instances = {next(t["Value"] for t in i["Tags"] if t["Key"] == "ray-user-node-type"): i
                     for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert instances["spot_c5"]["InstanceLifecycle"] == "spot"
    assert instances["spot_c5"]["InstanceType"] == "c5.xlarge"
    assert "InstanceLifecycle" not in instances["on_demand_fallback"]
    tags = {t["Key"]: t["Value"] for t in instances["spot_c5"]["Tags"]}
    assert tags["spot-tuner:market"] == "spot"  # cost-allocation tag for Cost Explorer
    shutil.rmtree(tmp_path / ".ssh", ignore_errors=True)
