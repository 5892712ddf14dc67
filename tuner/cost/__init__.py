"""What a study costs: instance prices as dated data, and a meter over node-seconds."""

from tuner.cost.catalog import InstancePrice, Market, PriceCatalog
from tuner.cost.meter import CostMeter, NodeInfo

__all__ = ["CostMeter", "InstancePrice", "Market", "NodeInfo", "PriceCatalog"]
