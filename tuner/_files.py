"""Small file helpers: text and YAML reading with located errors, crash-safe JSON writes."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import yaml

from tuner.errors import ConfigError


def read_text(path: str) -> str:
    """A UTF-8 text file's contents; a missing, unreadable or non-UTF-8 file (or a
    directory) becomes a ConfigError naming it and the fix."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory; pass the path of a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"is not UTF-8 text (byte {exc.start}); save it as "
                          f"UTF-8") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot be read ({exc.strerror or exc}); check its "
                          f"permissions") from None


def read_yaml(path: str) -> Any:
    """Parse a YAML file; an unreadable file or a syntax error becomes a ConfigError."""
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(os.path.basename(path), f"line {mark.line + 1}" if mark else "",
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
