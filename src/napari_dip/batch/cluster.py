"""Slices as tasks on a Dask distributed cluster: a LocalCluster or an existing scheduler."""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from typing import Callable, Iterator

import numpy as np

from .walk import restore_slices


def _distributed():
    try:
        import distributed
    except ImportError as err:
        raise ImportError("--workers and --scheduler need Dask: pip install napari-dip[distributed]") from err
    return distributed


@contextlib.contextmanager
def open_client(*, workers: int | None = None, scheduler: str | None = None,
                processes: bool = True) -> Iterator[tuple[object | None, int | None]]:
    """(client, torch threads per task): (None, None) to run locally, a LocalCluster of
    ``workers`` or ``scheduler``'s cluster.

    LocalCluster workers are single-threaded processes on loopback; torch in each uses
    ``cpu_count // workers`` threads, at most ``OMP_NUM_THREADS`` when that is set (more threads
    than free cores make every thread wait for the others). On an existing cluster torch keeps
    its default.
    """
    if workers is not None and scheduler is not None:
        raise ValueError("give either --workers (a local cluster) or --scheduler (an existing one), not both")
    if workers is None and scheduler is None:
        yield None, None
        return
    dist = _distributed()
    if scheduler is not None:
        try:
            client = dist.Client(scheduler, timeout="20s")
        except OSError as err:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r}: {err}") from None
        with client:
            yield client, None
        return
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    import dask
    where = {"host": "127.0.0.1"} if processes else {}  # loopback; in-process clusters need no network
    # A worker that dies while fitting fails its task at once; run_on_cluster decides about retries.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = dist.LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                    dashboard_address=None, silence_logs=logging.ERROR, **where)
    client = dist.Client(cluster)
    try:
        yield client, (_threads_per_worker(workers) if processes else None)
    finally:  # bounded, so that Ctrl-C ends the command promptly even with busy workers
        with contextlib.suppress(Exception):
            client.close(timeout=5)
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)


def _threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` local processes: a share of the cores, capped by
    the user's ``OMP_NUM_THREADS``."""
    share = max(1, (os.cpu_count() or 1) // workers)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) > 0 else share


#: Seconds without any worker after which a cluster run stops (workers lost or never started).
NO_WORKER_SECONDS = 30.0
#: Seconds between two looks at the cluster while waiting for results.
POLL_SECONDS = 1.0


class ClusterLost(RuntimeError):
    """No Dask worker is left to run the slices."""


def run_on_cluster(client, chunks: list[list[int]], make_args: Callable[[int], tuple], *, config, device: str,
                   channel_axis: int | None, retries: int, threads: int | None,
                   on_result: Callable[[int, np.ndarray, dict, dict], None],
                   on_failure: Callable[[int, str], None], batch_size: int = 1,
                   warm_start: bool = False) -> None:
    """One task per chunk of slices (:func:`~napari_dip.batch.walk.chunks_of`); report each
    slice's result, or a chunk's failure.

    ``make_args(i)`` gives (image, mask, ground_truth) of flat slice ``i``. Chunks are read and
    submitted as tasks finish, about two per worker thread in flight, so the caller holds only
    those in memory; results are handed over as they finish, so the caller can store them.
    A failed task (an error, or its worker died) is tried again up to ``retries`` times; a
    chunk that still fails is reported and the run stops (nothing more is submitted, tasks in
    flight are cancelled). With no worker left for :data:`NO_WORKER_SECONDS` it raises
    :class:`ClusterLost`. The wait polls, so Ctrl-C always stops it at once.
    """
    dist = _distributed()
    pending = iter(chunks)
    futures: dict = {}
    attempts: dict[int, int] = {}  # first slice of a chunk -> tries so far

    def submit(chunk: list[int]) -> None:
        attempts[chunk[0]] = attempts.get(chunk[0], 0) + 1
        fut = client.submit(restore_slices, config, [make_args(i) for i in chunk], channel_axis=channel_axis,
                            device=device, threads=threads, batch_size=batch_size, warm_start=warm_start,
                            pure=False, key=f"napari-dip-slices-{chunk[0]}-{os.urandom(4).hex()}")
        futures[fut] = chunk

    def submit_more() -> None:
        room = max(2, 2 * sum(client.nthreads().values())) - len(futures)
        for chunk in itertools.islice(pending, max(room, 0)):
            submit(chunk)

    submit_more()
    alone_since = None
    try:
        while futures:
            try:
                finished = dist.wait(list(futures), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                finished = set()
            if not finished:
                if client.nthreads():
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
                elif time.monotonic() - alone_since > NO_WORKER_SECONDS:
                    raise ClusterLost(f"no Dask worker has been left for {NO_WORKER_SECONDS:.0f} s (they died or "
                                      "were stopped); finished slices are kept: start workers again and "
                                      "rerun the same command to resume")
                continue
            for fut in finished:
                chunk = futures.pop(fut)
                if fut.status == "finished":
                    results, info = fut.result()
                    for i, (output, record) in zip(chunk, results):
                        on_result(i, output, record, info)
                    continue
                if attempts[chunk[0]] <= retries:
                    submit(chunk)
                    continue
                error = _failure(fut, attempts[chunk[0]])
                for i in chunk:
                    on_failure(i, error)
                return
            submit_more()
    finally:
        if futures:
            client.cancel(list(futures))


def _failure(fut, attempts: int) -> str:
    """One line: why a task failed, and how often it was tried."""
    err = fut.exception()
    text = " ".join(str(err).split())
    if type(err).__name__ == "KilledWorker":
        text = f"its worker died each time (out of memory, killed or crashed): {text}"
    return f"{type(err).__name__}: {text} (after {attempts} attempt(s))"
