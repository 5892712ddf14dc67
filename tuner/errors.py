"""Errors a user can act on: each names where the problem is, what was wrong and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TunerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(TunerError, ValueError):
    """A space, an experiment file or an API argument is invalid.

    Rendered as one line: ``<source>: <key>: <message>``.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


class StudyError(TunerError):
    """A study could not run or resume; the message says the next command to try."""


class MetricNotReported(StudyError):
    """A trial reported without the study's metric: the study stops, its record says why
    (stop reason ``metric``) and ``tuner resume`` goes on once the trainable reports it."""


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest valid name, or ``""``."""
    valid, name = list(valid), str(name)
    close = (difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
             or [v for v in valid if len(name) >= 4 and v.startswith(name)][:1])  # `grace`
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(source: str, key: str, valid: Iterable[str], where: str = "") -> ConfigError:
    """The error for a key that is not one of ``valid``."""
    valid = sorted(valid)
    return ConfigError(
        source,
        f"{where}.{key}" if where else key,
        f"unknown key{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}",
    )
