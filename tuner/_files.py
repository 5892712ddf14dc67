"""Small file helpers: YAML reading with located errors, crash-safe JSON writes."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import yaml

from tuner.errors import ConfigError


def read_yaml(path: str) -> Any:
    """Parse a YAML file; a missing file or a syntax error becomes a ConfigError."""
    source = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(source, f"line {mark.line + 1}" if mark else "",
                          f"not valid YAML ({getattr(exc, 'problem', exc)})") from None


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # one line: json's C encoder (indenting falls back to the pure-Python one)
            f.write(json.dumps(data, sort_keys=True, default=str, separators=(",", ":")))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
