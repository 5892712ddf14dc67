"""Small file helpers: text and YAML reading with located errors, crash-safe JSON writes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

import yaml

from tuner.errors import ConfigError


def shown(path: str | os.PathLike[str]) -> str:
    """A file as an error names it: relative to the working directory when inside it (as a
    user would type it), else absolute."""
    path = os.path.abspath(path)
    relative = os.path.relpath(path)
    inside = relative != os.pardir and not relative.startswith(os.pardir + os.sep)
    return relative if inside else path


def read_text(path: str) -> str:
    """A UTF-8 text file's contents; a missing, unreadable or non-UTF-8 file (or a
    directory) becomes a ConfigError naming it and the fix."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(shown(path), "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(shown(path), "", "is a directory; pass the path of a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(shown(path), "", f"is not UTF-8 text (byte {exc.start}); save it as "
                          f"UTF-8") from None
    except OSError as exc:
        raise ConfigError(shown(path), "", f"cannot be read ({exc.strerror or exc}); check its "
                          f"permissions") from None


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"key {key!r} is given twice")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, but a mapping that gives a key twice is refused: PyYAML
    keeps the last silently. Keys a ``<<: *anchor`` merge brings in may be overridden.
    Numbers in exponent form without a dot (``1e-2``, ``5E3``) are numbers, as in YAML 1.2
    (PyYAML follows YAML 1.1, which reads them as strings)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key] + 1)
            except TypeError:  # an unhashable key: the constructor says so
                break
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(path: str) -> Any:
    """Parse a YAML file; an unreadable file, a syntax error or a key given twice in one
    mapping becomes a ConfigError."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError(shown(path), f"line {exc.line}", f"key {exc.key!r} is "
                          f"given twice in one mapping (first on line {exc.first_line}); keep "
                          f"one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(shown(path), f"line {mark.line + 1}" if mark else "",
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
