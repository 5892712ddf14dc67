"""Reconcilable with AWS: a study tags its cluster's instances with a cost-allocation tag,
and `tuner report --aws` lists the cluster's instances (lifecycle, type, uptime) next to the
study's own figures.

Faked: AWS, by moto in-process (EC2 instances as Ray's AWS node provider launches them,
tagged `ray-cluster-name`). MLflow is a real sqlite store in tmp_path.
"""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tuner.cli import main
from tuner.cost.live import STUDY_TAG, cluster_instances, tag_study
from tuner.record import StudyRecord
from tuner.study import StudyBook
from tuner.tracking import Tracker


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


def launch(ec2, cluster: str, kind: str, spot: bool) -> str:
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    extra = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    reply = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType=kind, **extra,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "ray-cluster-name", "Value": cluster}]}])
    return reply["Instances"][0]["InstanceId"]


def test_the_clusters_instances_are_listed_with_lifecycle_and_type(aws):
    head = launch(aws, "spot-tuner", "m5.large", spot=False)
    worker = launch(aws, "spot-tuner", "c5.xlarge", spot=True)
    launch(aws, "someone-else", "c5.xlarge", spot=True)
    found = {i.instance_id: i for i in cluster_instances("spot-tuner", "us-east-1")}
    assert set(found) == {head, worker}
    assert (found[head].lifecycle, found[head].instance_type) == ("on-demand", "m5.large")
    assert (found[worker].lifecycle, found[worker].instance_type) == ("spot", "c5.xlarge")


def test_a_study_tags_only_its_clusters_instances(aws):
    ours = [launch(aws, "spot-tuner", "c5.xlarge", spot=True) for _ in range(2)]
    theirs = launch(aws, "someone-else", "c5.xlarge", spot=True)
    assert sorted(tag_study("spot-tuner", "mlp-1", "us-east-1")) == sorted(ours)
    tags = {i["InstanceId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            for r in aws.describe_instances()["Reservations"] for i in r["Instances"]}
    assert all(tags[i][STUDY_TAG] == "mlp-1" for i in ours)
    assert STUDY_TAG not in tags[theirs]


def _study(tmp_path, **settings) -> StudyRecord:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = Tracker(uri, "s").start_study("s", {"metric": "acc"}, {})
    return StudyRecord.create(
        str(tmp_path / "s"), name="s", metric="acc", mode="max", num_samples=1, mlflow_uri=uri,
        mlflow_experiment="s", parent_run_id=parent, settings={"metric": "acc", **settings})


def test_a_study_with_aws_cluster_tags_the_instances_as_it_starts(aws, tmp_path, capsys):
    worker = launch(aws, "spot-tuner", "c5.xlarge", spot=True)
    record = _study(tmp_path, aws_cluster="spot-tuner")
    StudyBook(record.path, verbose=True)
    assert cluster_instances("spot-tuner", "us-east-1")[0].study == "s"
    assert f"tagged 1 instances of cluster 'spot-tuner' with {STUDY_TAG}=s" in capsys.readouterr().out
    assert worker


def test_report_aws_lists_the_instances_beside_the_studys_figures(aws, tmp_path, capsys):
    launch(aws, "spot-tuner", "m5.large", spot=False)
    launch(aws, "spot-tuner", "c5.xlarge", spot=True)
    record = _study(tmp_path, aws_cluster="spot-tuner")
    assert main(["report", record.path, "--aws"]) == 0
    out = capsys.readouterr().out
    assert "AWS: 2 instances of cluster 'spot-tuner' in us-east-1" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("i-")]
    assert len(rows) == 2
    assert any("m5.large" in r and "on-demand" in r for r in rows)
    assert any("c5.xlarge" in r and "spot" in r for r in rows)


def test_report_aws_without_a_cluster_name_says_how_to_give_one(aws, tmp_path, capsys):
    record = _study(tmp_path)
    assert main(["report", record.path, "--aws"]) == 2
    assert "pass --cluster NAME" in capsys.readouterr().err


@pytest.fixture
def no_credentials(aws, tmp_path, monkeypatch):
    """No AWS credentials anywhere: the environment's emptied (not removed: moto restores
    its own on exit), no config files, the instance metadata endpoint off."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found


def test_report_aws_without_credentials_says_so_in_one_line(no_credentials, tmp_path, capsys):
    """One error line naming what to give, exit 1, no traceback; the study's own report is
    printed first."""
    record = _study(tmp_path, aws_cluster="spot-tuner")
    assert main(["report", record.path, "--aws"]) == 1
    out, err = capsys.readouterr()
    assert "MLflow" in out
    assert err == ("error: AWS did not list the instances of cluster 'spot-tuner' in us-east-1 "
                   "(NoCredentialsError: Unable to locate credentials); give this machine AWS "
                   "credentials (AWS_PROFILE, `aws configure`) that allow ec2:DescribeInstances\n")


def test_a_quiet_study_still_warns_when_it_cannot_tag_its_cluster(no_credentials, tmp_path,
                                                                  capsys):
    """`--quiet` (verbose=False) drops progress lines, not warnings: with no credentials
    the study goes on untagged and says so on stderr."""
    record = _study(tmp_path, aws_cluster="spot-tuner")
    StudyBook(record.path, verbose=False)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("[tuner] warning: could not tag the instances of cluster "
                          "'spot-tuner' with ")
    assert err.rstrip().endswith("the bill will not be grouped by study")
