"""One driver per study: a lock file in the study directory, held while a driver runs it.

The lock is an ``flock`` on ``tuner_study.lock``, so the kernel releases it the moment its
driver dies (``kill -9`` included): a lock left by a dead driver is taken over without a
step from the user. The file also says who holds it (pid, host, start time) for the
message a second driver gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from types import TracebackType

from tuner.errors import StudyError

LOCK_FILE = "tuner_study.lock"


class StudyLock:
    """``with StudyLock(path):`` -- this process drives the study at ``path``, or
    :class:`StudyError` says which process does."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> StudyLock:
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(os.path.join(self.path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise StudyError(
                f"{self.path}: the study is being run by {_describe(holder)}; wait for it "
                f"to finish (or stop it, then `tuner resume {self.path}`)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.time()}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def held(path: str) -> bool:
    """Whether a live driver runs the study at ``path`` (a killed one's lock is free).

    Asks for the lock shared, without waiting, and gives it back at once: a driver
    starting in those microseconds is refused as if this were one."""
    try:
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDONLY)
    except OSError:  # no lock file: no driver ever ran it here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another driver"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {started})"
