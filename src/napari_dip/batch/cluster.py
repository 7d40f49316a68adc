"""Slices as tasks on a Dask distributed cluster: a LocalCluster or an existing scheduler."""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
from typing import Callable, Iterator

import numpy as np


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
    ``cpu_count // workers`` threads. On an existing cluster torch keeps its default.
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
    where = {"host": "127.0.0.1"} if processes else {}  # loopback; in-process clusters need no network
    with dist.LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=None, silence_logs=logging.ERROR, **where) as cluster, \
            dist.Client(cluster) as client:
        yield client, (max(1, (os.cpu_count() or 1) // workers) if processes else None)


def restore_slice(config, image: np.ndarray, *, channel_axis: int | None, mask, ground_truth,
                  device: str, threads: int | None) -> tuple[np.ndarray, dict, dict]:
    """One slice on a worker through :func:`napari_dip.api.run`: (output, record, info).

    ``info`` holds the worker's device and the network's parameter count.
    """
    from .. import api
    from ..core.fit import drain
    if threads:
        import torch
        torch.set_num_threads(threads)
    output, report = drain(api.run(config, image, channel_axis=channel_axis, mask=mask,
                                   ground_truth=ground_truth, device=device, batch_size=1))
    return output, report["slices"][0], {"device": report["device"], "parameters": report["parameters"]}


def run_on_cluster(client, todo: list[int], make_args: Callable[[int], tuple], *, config, device: str,
                   channel_axis: int | None, retries: int, threads: int | None,
                   on_result: Callable[[int, np.ndarray, dict, dict], None],
                   on_failure: Callable[[int, str], None]) -> None:
    """One task per slice (retried ``retries`` times); report each result or failure.

    ``make_args(i)`` gives (image, mask, ground_truth) of flat slice ``i``. Slices are read and
    submitted as tasks finish, about two per worker thread in flight, so the caller holds only
    those in memory; results are handed over as they finish, so the caller can store them;
    nothing is dropped silently.
    """
    dist = _distributed()
    pending = iter(todo)
    futures: dict = {}
    queue = dist.as_completed()

    def submit_more() -> None:
        room = max(2, 2 * sum(client.nthreads().values())) - len(futures)
        for i in itertools.islice(pending, max(room, 0)):
            image, mask, truth = make_args(i)
            fut = client.submit(restore_slice, config, image, channel_axis=channel_axis, mask=mask,
                                ground_truth=truth, device=device, threads=threads, retries=retries,
                                pure=False, key=f"napari-dip-slice-{i}-{os.urandom(4).hex()}")
            futures[fut] = i
            queue.add(fut)

    submit_more()
    try:
        for fut in queue:
            i = futures.pop(fut)
            if fut.status != "finished":
                err = fut.exception()
                on_failure(i, f"{type(err).__name__}: {err}")
            else:
                on_result(i, *fut.result())
            submit_more()
    finally:
        client.cancel(list(futures))
