"""Live AWS prices: EC2 spot price history against moto (in-process), the Pricing API
through botocore's Stubber (moto has none), and the fallback to the catalog.

Faked: AWS itself. moto answers `describe_spot_price_history` with canned prices; the
Stubber answers `get_products` with a response of the Pricing API's documented shape.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tuner.cost import Market, PriceCatalog
from tuner.cost.live import live_catalog, on_demand_prices, spot_prices


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)


def pricing_stub(usd_by_type):
    client = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    for kind in sorted(usd_by_type):
        product = {"product": {"attributes": {"instanceType": kind}},
                   "terms": {"OnDemand": {"T1": {"priceDimensions": {"D1": {
                       "unit": "Hrs", "pricePerUnit": {"USD": str(usd_by_type[kind])}}}}}}}
        stub.add_response("get_products", {"PriceList": [json.dumps(product)],
                                           "FormatVersion": "aws_v1"})
    stub.activate()
    return client, stub


@mock_aws
def test_spot_prices_come_from_the_price_history_cheapest_zone():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    prices = spot_prices("us-east-1", ["m5.large", "c5.xlarge"], client=ec2)
    assert set(prices) == {"m5.large", "c5.xlarge"}
    zones = spot_prices("us-east-1", ["m5.large"], client=ec2, per_zone=True)["m5.large"]
    assert len(zones) > 1 and prices["m5.large"] == min(zones.values())


def test_on_demand_prices_come_from_the_pricing_api():
    client, stub = pricing_stub({"m5.large": 0.1, "p3.2xlarge": 3.5})
    assert on_demand_prices("us-east-1", ["p3.2xlarge", "m5.large"], client=client) == \
        {"m5.large": 0.1, "p3.2xlarge": 3.5}
    stub.assert_no_pending_responses()


@mock_aws
def test_live_prices_replace_the_catalog_and_say_where_they_come_from():
    catalog = PriceCatalog.load()
    types = sorted(p.instance_type for p in catalog if p.region == "us-east-1")
    client, _ = pricing_stub(dict.fromkeys(types, 1.25))
    live, note = live_catalog(catalog, "us-east-1", ec2=boto3.client("ec2", "us-east-1"),
                              pricing=client)
    assert note == "live prices for us-east-1 fetched now"
    m5 = live.get("m5.large", "us-east-1")
    assert m5.on_demand_usd_hour == 1.25 and "Pricing API" in m5.source(Market.ON_DEMAND)
    assert m5.spot_usd_hour != catalog.get("m5.large", "us-east-1").spot_usd_hour
    assert "describe_spot_price_history" in m5.source(Market.SPOT)
    # a second look within the hour reads the cache instead of AWS
    again, note = live_catalog(catalog, "us-east-1", ec2=object(), pricing=object())
    assert "from the cache" in note
    assert again.get("m5.large", "us-east-1") == m5


def test_without_aws_the_catalog_is_used_and_the_note_says_so():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2_stub = Stubber(ec2)
    ec2_stub.add_client_error("describe_spot_price_history", "UnauthorizedOperation")
    ec2_stub.activate()
    pricing = boto3.client("pricing", region_name="us-east-1")
    pricing_stubbed = Stubber(pricing)
    pricing_stubbed.add_client_error("get_products", "AccessDeniedException")
    pricing_stubbed.activate()
    catalog = PriceCatalog.load()
    live, note = live_catalog(catalog, "us-east-1", ec2=ec2, pricing=pricing)
    assert note.startswith("live prices unavailable (spot: ClientError")
    assert "on-demand: AccessDeniedException" in note and "using the catalog" in note
    assert live.get("m5.large", "us-east-1") == catalog.get("m5.large", "us-east-1")
    assert not os.path.exists(os.path.join(os.environ["XDG_CACHE_HOME"], "spot-tuner"))
