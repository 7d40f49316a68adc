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


#: With warm starts, a chunk of slices restored together (a Dask task, or one read of a Zarr
#: input) is one cold slice and this many batches warm-started after it.
WARM_BATCHES = 4
#: Slices per chunk when the batch size is automatic (the run picks batches within it).
AUTO_CHUNK = 8


def chunks_of(todo: list[int], batch_size: int | None, warm_start: bool) -> list[list[int]]:
    """The consecutive slices restored together: one batch (``None``: :data:`AUTO_CHUNK`
    slices), or with warm starts one cold slice and :data:`WARM_BATCHES` batches after it."""
    batch = AUTO_CHUNK if batch_size is None else batch_size
    size = 1 + WARM_BATCHES * batch if warm_start else batch
    return [todo[k:k + size] for k in range(0, len(todo), size)]


def restore_slices(config, slices: list[tuple], *, channel_axis: int | None, device: str, threads: int | None,
                   batch_size: int | None = 1, warm_start: bool = False, cancel=None,
                   on_progress: Callable | None = None) -> tuple[list[tuple[np.ndarray, dict]], dict]:
    """Consecutive slices, each (image, mask, ground truth), through one :func:`napari_dip.api.run`
    (on a worker or locally): ([(output, record)] in order, info).

    ``info`` holds the device and the network's parameter count. A mask shared by all slices
    (the same object) is passed once; ``on_progress`` gets the run's events.
    """
    from .. import api
    from ..core.fit import drain
    if threads:
        import torch
        torch.set_num_threads(threads)
    images, masks, truths = zip(*slices)
    shared = all(m is masks[0] for m in masks)
    mask = masks[0] if shared else np.stack(masks)
    truth = None if truths[0] is None else np.stack(truths)
    stack_channel = None if channel_axis is None else channel_axis + 1
    output, report = drain(api.run(config, np.stack(images), channel_axis=stack_channel, mask=mask,
                                   ground_truth=truth, device=device, batch_size=batch_size,
                                   warm_start=warm_start, cancel=cancel), on_progress)
    records = {r["slice"]: r for r in report["slices"]}
    info = {"device": report["device"], "parameters": report.get("parameters")}
    return [(output[j], records[j]) for j in range(len(slices)) if j in records], info


def run_on_cluster(client, todo: list[int], make_args: Callable[[int], tuple], *, config, device: str,
                   channel_axis: int | None, retries: int, threads: int | None,
                   on_result: Callable[[int, np.ndarray, dict, dict], None],
                   on_failure: Callable[[int, str], None], batch_size: int | None = 1,
                   warm_start: bool = False) -> None:
    """One task per chunk of slices (:func:`chunks_of`; retried ``retries`` times); report each
    slice's result or failure.

    ``make_args(i)`` gives (image, mask, ground_truth) of flat slice ``i``. Chunks are read and
    submitted as tasks finish, about two per worker thread in flight, so the caller holds only
    those in memory; results are handed over as they finish, so the caller can store them;
    nothing is dropped silently.
    """
    dist = _distributed()
    pending = iter(chunks_of(todo, batch_size, warm_start))
    futures: dict = {}
    queue = dist.as_completed()

    def submit_more() -> None:
        room = max(2, 2 * sum(client.nthreads().values())) - len(futures)
        for chunk in itertools.islice(pending, max(room, 0)):
            fut = client.submit(restore_slices, config, [make_args(i) for i in chunk], channel_axis=channel_axis,
                                device=device, threads=threads, batch_size=batch_size, warm_start=warm_start,
                                retries=retries, pure=False,
                                key=f"napari-dip-slices-{chunk[0]}-{os.urandom(4).hex()}")
            futures[fut] = chunk
            queue.add(fut)

    submit_more()
    try:
        for fut in queue:
            chunk = futures.pop(fut)
            if fut.status != "finished":
                err = fut.exception()
                for i in chunk:
                    on_failure(i, f"{type(err).__name__}: {err}")
            else:
                results, info = fut.result()
                for i, (output, record) in zip(chunk, results):
                    on_result(i, output, record, info)
            submit_more()
    finally:
        client.cancel(list(futures))
