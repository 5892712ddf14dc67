"""The price catalog: per instance type and region, on-demand and typical spot $/hour.

Shipped as ``prices.csv`` beside this module; every row says where its prices come
from and when. A user's own file of the same columns replaces it (``prices:`` in the
experiment file), and live spot prices (:mod:`tuner.cost.live`) override its spot column.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum

from tuner._files import read_text, shown
from tuner.errors import ConfigError, did_you_mean

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")  # us-east-1, us-gov-west-1
DEFAULT_CATALOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.csv")
COLUMNS = ("instance_type", "region", "vcpus", "gpus", "memory_gib", "on_demand_usd_hour",
           "spot_usd_hour", "on_demand_source", "spot_source", "date")


class Market(str, Enum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"

    @classmethod
    def parse(cls, value: str, source: str = "market", key: str = "market") -> Market:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(source, key, f"must be 'spot' or 'on-demand', got {value!r}"
                              f"{did_you_mean(value, [m.value for m in cls])}") from None


@dataclass(frozen=True)
class InstancePrice:
    instance_type: str
    region: str
    vcpus: int
    gpus: int
    on_demand_usd_hour: float
    spot_usd_hour: float
    on_demand_source: str
    spot_source: str
    date: str
    spot_date: str | None = None  # when a live price replaced the catalog's
    on_demand_date: str | None = None

    def hourly(self, market: Market) -> float:
        return self.spot_usd_hour if market is Market.SPOT else self.on_demand_usd_hour

    def source(self, market: Market) -> str:
        if market is Market.SPOT:
            return f"{self.spot_source} ({self.spot_date or self.date})"
        return f"{self.on_demand_source} ({self.on_demand_date or self.date})"


class PriceCatalog:
    """Prices by (instance type, region)."""

    def __init__(self, prices: Mapping[tuple[str, str], InstancePrice], path: str) -> None:
        self._prices = dict(prices)
        self.path = path

    @classmethod
    def load(cls, path: str | None = None) -> PriceCatalog:
        """Read a catalog CSV; a missing column or a bad price names the file, line and fix."""
        path = path or DEFAULT_CATALOG
        source = shown(path)
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(source, missing[0], f"column missing; a price file has the "
                              f"columns {', '.join(COLUMNS)}")
        prices: dict[tuple[str, str], InstancePrice] = {}
        lines: dict[tuple[str, str], int] = {}
        for line, row in enumerate(reader, start=2):
            price = _row(source, line, row)
            key = (price.instance_type, price.region)
            if key in prices:
                raise ConfigError(source, f"line {line}", f"{key[0]} in {key[1]} is priced on "
                                  f"line {lines[key]} already; keep one row per instance type "
                                  f"and region")
            prices[key], lines[key] = price, line
        if not prices:
            raise ConfigError(source, "", "no prices in the file")
        return cls(prices, path)

    @property
    def regions(self) -> list[str]:
        return sorted({r for _, r in self._prices})

    @property
    def instance_types(self) -> list[str]:
        return sorted({t for t, _ in self._prices})

    def get(self, instance_type: str, region: str) -> InstancePrice:
        price = self._prices.get((instance_type, region))
        if price is not None:
            return price
        if region not in self.regions:
            # a well-formed region name is one AWS has (eu-west-1), not a misspelt listed one
            hint = "" if _REGION.match(region) else did_you_mean(region, self.regions)
            raise ConfigError(shown(self.path), "region", f"no prices for region "
                              f"{region!r}{hint}; this file has "
                              f"{', '.join(self.regions)}: for another, copy it, add that "
                              f"region's rows and pass it as `prices:` (--prices FILE)")
        raise ConfigError(shown(self.path), "instance_type", f"no price for "
                          f"{instance_type!r} in {region}{did_you_mean(instance_type, self.instance_types)}"
                          f"; add a row to the price file or pick a listed type")

    def __iter__(self):
        return iter(sorted(self._prices.values(), key=lambda p: (p.region, p.instance_type)))

    def with_prices(self, spot: Mapping[tuple[str, str], tuple[float, str, str]] = {},
                    on_demand: Mapping[tuple[str, str], tuple[float, str, str]] = {}
                    ) -> PriceCatalog:
        """A copy with prices replaced: (type, region) -> (usd/hour, source, date)."""
        prices = dict(self._prices)
        for key, (usd, source, date) in spot.items():
            if key in prices:
                prices[key] = replace(prices[key], spot_usd_hour=usd, spot_source=source,
                                      spot_date=date)
        for key, (usd, source, date) in on_demand.items():
            if key in prices:
                prices[key] = replace(prices[key], on_demand_usd_hour=usd,
                                      on_demand_source=source, on_demand_date=date)
        return PriceCatalog(prices, self.path)


def _row(source: str, line: int, row: Mapping[str, str]) -> InstancePrice:
    def number(key: str, least: float = 0) -> float:
        try:
            value = float(row[key])
        except (TypeError, ValueError):
            raise ConfigError(source, f"line {line}: {key}", f"must be a number, got "
                              f"{row[key]!r}") from None
        if not math.isfinite(value) or value < least:
            raise ConfigError(source, f"line {line}: {key}", f"must be >= {least:g}, got "
                              f"{row[key]}; fix the row")
        return value

    def count(key: str, least: int) -> int:
        value = number(key, least)
        if value != int(value):
            raise ConfigError(source, f"line {line}: {key}", f"must be a whole number, got "
                              f"{row[key]}; fix the row")
        return int(value)

    for key in ("instance_type", "region", "on_demand_source", "spot_source", "date"):
        if not (row.get(key) or "").strip():
            raise ConfigError(source, f"line {line}: {key}", "is empty; every price needs its "
                              "instance type, region, source and date")
    return InstancePrice(row["instance_type"].strip(), row["region"].strip(),
                         count("vcpus", 1), count("gpus", 0),
                         number("on_demand_usd_hour"), number("spot_usd_hour"),
                         row["on_demand_source"].strip(), row["spot_source"].strip(),
                         row["date"].strip())
