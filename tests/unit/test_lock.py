"""One driver per study: a second driver is refused with who holds the study, and a lock
left by a driver that died (SIGKILL, no clean-up) is taken over.

Nothing is faked: the first driver is a real process holding the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tuner.errors import StudyError
from tuner.lock import LOCK_FILE, StudyLock

HOLD = "import sys, time\nfrom tuner.lock import StudyLock\nwith StudyLock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(60)\n"


def _holder(path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_driver_is_refused_and_told_who_runs_the_study(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(StudyError, match=f"being run by pid {holder.pid} on "), \
                StudyLock(str(tmp_path)):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_driver_is_taken_over(tmp_path):
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # it left its lock file behind
    with StudyLock(str(tmp_path)):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()


def test_the_lock_is_free_again_once_its_driver_is_done(tmp_path):
    with StudyLock(str(tmp_path)):
        pass
    started = time.monotonic()
    with StudyLock(str(tmp_path)):
        assert time.monotonic() - started < 1
