"""AWS, at the edge: the one module that imports ``boto3``.

Live prices: spot prices come from EC2 ``describe_spot_price_history`` (the latest price in
each availability zone; the cheapest zone is what a spot fleet across zones pays),
on-demand prices from the Pricing API where the credentials allow. Results are cached on
disk for an hour. Any failure falls back to the catalog and says so.

The bill: a Ray cluster's instances (the autoscaler tags them ``ray-cluster-name``) with
their lifecycle, type and uptime, and the study tag ``spot-tuner:study`` a study puts on
them while it runs, so AWS Cost Explorer groups the bill as the MLflow runs do.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tuner._files import write_json_atomic
from tuner.cost.catalog import PriceCatalog
from tuner.errors import StudyError

CACHE_MAX_AGE_S = 3600
_LOCATION_FILTERS = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                     "capacitystatus": "Used"}


def cache_path(region: str) -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "spot-tuner", f"prices-{region}.json")


def spot_prices(region: str, instance_types: Iterable[str], client: Any = None,
                per_zone: bool = False) -> dict[str, Any]:
    """Latest Linux spot $/hour per type: the cheapest zone's, or every zone's (per_zone)."""
    if client is None:
        import boto3

        client = boto3.client("ec2", region_name=region)
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    pages = client.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=sorted(instance_types), ProductDescriptions=["Linux/UNIX"],
        StartTime=datetime.now(UTC))
    for page in pages:
        for item in page["SpotPriceHistory"]:
            key = (item["InstanceType"], item["AvailabilityZone"])
            stamp, price = item["Timestamp"], float(item["SpotPrice"])
            if key not in latest or stamp > latest[key][0]:
                latest[key] = (stamp, price)
    if per_zone:
        out: dict[str, Any] = {}
        for (kind, zone), (_, price) in latest.items():
            out.setdefault(kind, {})[zone] = price
        return out
    cheapest: dict[str, float] = {}
    for (kind, _), (_, price) in latest.items():
        cheapest[kind] = min(price, cheapest.get(kind, price))
    return cheapest


def on_demand_prices(region: str, instance_types: Iterable[str], client: Any = None) -> dict[str, float]:
    """Linux on-demand $/hour per type from the Pricing API (served from us-east-1)."""
    if client is None:
        import boto3

        client = boto3.client("pricing", region_name="us-east-1")
    out: dict[str, float] = {}
    for kind in sorted(instance_types):
        filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in
                   {"instanceType": kind, "regionCode": region, **_LOCATION_FILTERS}.items()]
        response = client.get_products(ServiceCode="AmazonEC2", Filters=filters, MaxResults=10)
        for raw in response.get("PriceList", []):
            product = json.loads(raw) if isinstance(raw, str) else raw
            for term in product.get("terms", {}).get("OnDemand", {}).values():
                for dim in term.get("priceDimensions", {}).values():
                    usd = float(dim.get("pricePerUnit", {}).get("USD", 0) or 0)
                    if usd > 0:
                        out[kind] = usd
    return out


def live_catalog(catalog: PriceCatalog, region: str, refresh: bool = False,
                 offline: bool = False, ec2: Any = None, pricing: Any = None,
                 clock: Any = time.time) -> tuple[PriceCatalog, str]:
    """The catalog with live prices for ``region`` laid over it, and a line saying which.

    Uses the cache when it is younger than an hour, unless ``refresh``; ``offline``
    never calls AWS (the cache or the catalog alone).
    """
    types = [p.instance_type for p in catalog if p.region == region]
    path = cache_path(region)
    cached = _read_cache(path)
    if cached and not refresh and clock() - cached["fetched"] < CACHE_MAX_AGE_S:
        data, note = cached, f"live prices for {region} from the cache ({_ago(clock, cached)})"
    elif offline:
        return catalog, (f"catalog prices from {os.path.basename(catalog.path)} (run `tuner "
                         f"prices --refresh` for live AWS prices)")
    else:
        data = {"fetched": clock(), "spot": {}, "on_demand": {}}
        notes = []
        try:
            data["spot"] = spot_prices(region, types, client=ec2)
        except Exception as exc:  # no credentials, no network, throttled: fall back
            notes.append(f"spot: {_why(exc)}")
        try:
            data["on_demand"] = on_demand_prices(region, types, client=pricing)
        except Exception as exc:
            notes.append(f"on-demand: {_why(exc)}")
        if data["spot"] or data["on_demand"]:
            write_json_atomic(path, data)
        note = f"live prices for {region} fetched now" if not notes else \
            f"live prices unavailable ({'; '.join(notes)}); using the catalog {catalog.path} " \
            f"where they are missing"
    stamp = datetime.fromtimestamp(data["fetched"], UTC).strftime("%Y-%m-%dT%H:%MZ")
    live = catalog.with_prices(
        spot={(k, region): (v, "AWS EC2 describe_spot_price_history, cheapest zone", stamp)
              for k, v in data["spot"].items()},
        on_demand={(k, region): (v, "AWS Pricing API get_products", stamp)
                   for k, v in data["on_demand"].items()})
    return live, note


def _read_cache(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _ago(clock: Any, cached: dict[str, Any]) -> str:
    return f"{int((clock() - cached['fetched']) / 60)} min old"


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}".rstrip(": ")


def study_catalog(prices: str | None, region: str, live: bool) -> tuple[PriceCatalog, str]:
    """The prices a study charges: the catalog, with live AWS prices over it if ``live``."""
    catalog = PriceCatalog.load(prices)
    if not live:
        return catalog, f"catalog prices from {os.path.basename(catalog.path)}"
    return live_catalog(catalog, region)


# --- the cluster's instances, and the study tag --------------------------------------------

CLUSTER_TAG = "ray-cluster-name"  # set by Ray's AWS node provider on every node
STUDY_TAG = "spot-tuner:study"  # a cost-allocation tag: the study a node worked for


@dataclass(frozen=True)
class Instance:
    instance_id: str
    instance_type: str
    lifecycle: str  # spot | on-demand
    zone: str
    launched: datetime
    state: str
    study: str | None  # the STUDY_TAG's value, if any

    def uptime_s(self, now: datetime) -> float:
        return max(0.0, (now - self.launched).total_seconds())


def cluster_instances(cluster: str, region: str, client: Any = None) -> list[Instance]:
    """The instances of the Ray cluster named ``cluster`` (its launcher YAML's
    ``cluster_name``), running or not yet terminated."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = client or _ec2(region)
    found = []
    pages = client.get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    try:
        items = [item for page in pages for reservation in page["Reservations"]
                 for item in reservation["Instances"]]
    except (BotoCoreError, ClientError) as exc:  # no credentials, no permission, no network
        raise StudyError(f"AWS did not list the instances of cluster {cluster!r} in {region} "
                         f"({_why(exc)}); give this machine AWS credentials (AWS_PROFILE, "
                         f"`aws configure`) that allow ec2:DescribeInstances") from None
    for item in items:
        tags = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
        found.append(Instance(
            item["InstanceId"], item["InstanceType"],
            "spot" if item.get("InstanceLifecycle") == "spot" else "on-demand",
            item["Placement"]["AvailabilityZone"], item["LaunchTime"],
            item["State"]["Name"], tags.get(STUDY_TAG)))
    return sorted(found, key=lambda i: i.launched)


def tag_study(cluster: str, study: str, region: str, client: Any = None) -> list[str]:
    """Put ``STUDY_TAG=study`` on the cluster's instances; returns their ids. Tags are
    hourly in Cost Explorer: a node shared by two studies in one hour is billed to the study
    that tagged it last."""
    client = client or _ec2(region)
    ids = [i.instance_id for i in cluster_instances(cluster, region, client)]
    if ids:
        client.create_tags(Resources=ids, Tags=[{"Key": STUDY_TAG, "Value": study}])
    return ids


def _ec2(region: str) -> Any:
    import boto3

    return boto3.client("ec2", region_name=region)
