"""Checks of a Ray cluster launcher config for spot studies, beyond Ray's own.

Ray validates the config's shape but passes each ``node_config`` to EC2 unchecked, so a
typo (``MarketType: spott``, ``InstanceMarketOption``) surfaces only when AWS refuses the
launch -- or, worse, a misspelt optional key silently launches on-demand. We check every
``node_config`` against botocore's model of ``RunInstances`` (names, enum values, types),
and that each node type's labels agree with what it launches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner._files import read_yaml, shown
from tuner.cost.nodes import INSTANCE_TYPE, MARKET
from tuner.errors import ConfigError, did_you_mean


def check_cluster_config(path: str) -> dict[str, Any]:
    """Validate with Ray (``prepare_config`` + ``validate_config``), then our checks.

    Returns the prepared config. Raises ConfigError naming the file, key and fix.
    """
    import logging

    from tuner.ray_compat import cluster_config_validator

    prepare_config, validate_config = cluster_config_validator()
    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)
    source = shown(path)
    raw = read_yaml(path)
    if not isinstance(raw, Mapping) or "available_node_types" not in raw:
        raise ConfigError(source, "", "not a Ray cluster config (no available_node_types)")
    try:
        config = prepare_config(dict(raw))
        validate_config(config)
    except Exception as exc:  # Ray's jsonschema / value errors
        raise ConfigError(source, "", f"Ray rejects it: {str(exc).splitlines()[0]}") from None
    if config.get("provider", {}).get("type") == "aws":
        for name, node_type in config["available_node_types"].items():
            where = f"available_node_types.{name}"
            node_config = node_type.get("node_config", {})
            _check_shape(source, f"{where}.node_config", node_config, _run_instances())
            _check_labels(source, where, node_type, name == config["head_node_type"])
    return config


def _run_instances() -> Any:
    import botocore.session

    model = botocore.session.get_session().get_service_model("ec2")
    return model.operation_model("RunInstances").input_shape


def _check_shape(source: str, key: str, value: Any, shape: Any) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"must be a mapping, got {value!r}")
        for name, item in value.items():
            if name not in shape.members:
                raise ConfigError(source, f"{key}.{name}", f"not a RunInstances parameter"
                                  f"{did_you_mean(name, shape.members)}")
            _check_shape(source, f"{key}.{name}", item, shape.members[name])
    elif kind == "list":
        if not isinstance(value, list):
            raise ConfigError(source, key, f"must be a list, got {value!r}")
        for i, item in enumerate(value):
            _check_shape(source, f"{key}[{i}]", item, shape.member)
    elif kind == "string" and getattr(shape, "enum", None):
        if value not in shape.enum:
            raise ConfigError(source, key, f"{value!r} is not one of {', '.join(shape.enum)}"
                              f"{did_you_mean(str(value), shape.enum)}")
    elif kind in ("integer", "long") and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(source, key, f"must be a whole number, got {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        raise ConfigError(source, key, f"must be true or false, got {value!r}")


def _check_labels(source: str, where: str, node_type: Mapping[str, Any], head: bool) -> None:
    labels = node_type.get("labels") or {}
    node_config = node_type.get("node_config", {})
    for label in (MARKET, INSTANCE_TYPE):
        if label not in labels:
            raise ConfigError(source, f"{where}.labels", f"needs {label} so the cost meter can "
                              f"price the node, e.g. labels: {{{MARKET}: spot, "
                              f"{INSTANCE_TYPE}: {node_config.get('InstanceType', 'c5.xlarge')}}}")
    spot = node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    if (labels[MARKET] == "spot") != spot:
        raise ConfigError(source, f"{where}.labels.{MARKET}", f"says {labels[MARKET]!r} but "
                          f"node_config launches {'spot' if spot else 'on-demand'}; make them agree")
    if labels[INSTANCE_TYPE] != node_config.get("InstanceType"):
        raise ConfigError(source, f"{where}.labels.{INSTANCE_TYPE}", f"says "
                          f"{labels[INSTANCE_TYPE]!r} but node_config.InstanceType is "
                          f"{node_config.get('InstanceType')!r}")
    if head and spot:
        raise ConfigError(source, where, "the head runs the driver and holds the study: launch "
                          "it on-demand (drop InstanceMarketOptions)")
