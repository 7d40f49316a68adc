"""One run per output at a time: a lock file beside the output that names its owner.

The lock is ``OUT.napari-dip.lock`` holding the owner's pid, host and start time, and an
exclusive ``flock`` on it held for as long as the run lasts. The operating system drops the
``flock`` when the owner's process ends in any way (a crash, SIGKILL, a lost SLURM job), so a
lock file nobody holds is one whose process is gone: the next run takes it over and says so.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

#: Seconds between two looks at a lock held by another run, with ``wait``.
POLL_SECONDS = 1.0


class OutputLocked(ValueError):
    """Another live run writes the same output."""


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output``: beside it, ``OUT.napari-dip.lock``."""
    out = Path(output)
    return out.with_name(out.name + ".napari-dip.lock")


def describe(owner: dict) -> str:
    """'pid 12 on host h, started 2026-01-01 10:00:00 UTC' from a lock's contents."""
    if not owner:
        return "a run whose lock file is empty"
    return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started {owner.get('started', '?')}"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, *, wait: bool = False,
                on_notice: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of ``output`` for the ``with`` block; removed when the block ends.

    A lock held by a live run raises :class:`OutputLocked` naming that run, or with ``wait``
    is waited for. A lock file left by a run that is gone is taken over; ``on_notice`` gets
    one line saying so.
    """
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, wait, on_notice)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # unlinked while still held, so nobody takes the old file over
        os.close(fd)


def _acquire(path: Path, wait: bool, on_notice) -> int:
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read(fd)
            os.close(fd)
            if not wait:
                raise OutputLocked(f"{path.name[:-len('.napari-dip.lock')]} is being written by another napari-dip "
                                   f"run ({describe(owner)}); wait for it to end (or add --wait), or choose "
                                   f"another output") from None
            if not waited and on_notice is not None:
                on_notice(f"waiting for the run writing this output to end ({describe(owner)})")
            waited = True
            time.sleep(POLL_SECONDS)
            continue
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:  # released and removed meanwhile: start over
                raise FileNotFoundError
        except FileNotFoundError:
            os.close(fd)
            continue
        left = _read(fd)
        if left and on_notice is not None:
            on_notice(f"took over the lock left by a run that is gone ({describe(left)})")
        _write(fd)
        return fd


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "started": "? (unreadable lock file)"}


def _write(fd: int) -> None:
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(owner).encode())
    os.fsync(fd)
