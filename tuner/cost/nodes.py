"""What each Ray node is, read from its labels, and what it costs.

Our cluster configs (and the local cluster) start every node with these labels::

    tuner.io/market=spot|on-demand   tuner.io/instance-type=m5.xlarge
    tuner.io/region=us-east-1        tuner.io/zone=us-east-1a
    tuner.io/launched-at=<unix seconds>   (optional: when billing for the node began)

A node without them is priced as the study's default instance type and market.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.cost.catalog import Market, PriceCatalog
from tuner.cost.meter import NodeInfo

MARKET = "tuner.io/market"
INSTANCE_TYPE = "tuner.io/instance-type"
REGION = "tuner.io/region"
ZONE = "tuner.io/zone"
LAUNCHED_AT = "tuner.io/launched-at"


def labels_for(market: Market | str, instance_type: str, region: str,
               zone: str | None = None, launched_at: float | None = None) -> dict[str, str]:
    """The labels a node of this kind is started with (``ray start --labels``)."""
    labels = {MARKET: Market(market).value, INSTANCE_TYPE: instance_type, REGION: region}
    if zone:
        labels[ZONE] = zone
    if launched_at is not None:
        labels[LAUNCHED_AT] = str(int(launched_at))
    return labels


def node_info(node: Mapping[str, Any], catalog: PriceCatalog, default_instance_type: str,
              default_market: Market, region: str) -> NodeInfo:
    """Price one entry of ``ray.nodes()``."""
    labels = node.get("Labels") or {}
    labelled = INSTANCE_TYPE in labels
    instance_type = labels.get(INSTANCE_TYPE, default_instance_type)
    market = Market.parse(labels[MARKET], f"node {node['NodeID'][:8]}", key=MARKET) if MARKET in labels \
        else default_market
    node_region = labels.get(REGION, region)
    price = catalog.get(instance_type, node_region)
    resources = node.get("Resources") or {}
    return NodeInfo(
        node_id=node["NodeID"], instance_type=instance_type, region=node_region, market=market,
        usd_per_hour=price.hourly(market), cpus=float(resources.get("CPU", price.vcpus) or 1),
        gpus=float(resources.get("GPU", 0)), on_demand_usd_per_hour=price.on_demand_usd_hour,
        zone=labels.get(ZONE), labelled=labelled)


def launched_at(node: Mapping[str, Any]) -> float | None:
    value = (node.get("Labels") or {}).get(LAUNCHED_AT)
    try:
        return float(value) if value else None
    except ValueError:
        return None
