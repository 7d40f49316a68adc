"""How every volume run walks its slices: in fixed chunks, each chunk through one
:func:`napari_dip.api.run`, in this process (:func:`run_local`) or as a Dask task
(:func:`napari_dip.batch.cluster.run_on_cluster`).

The chunks depend only on the selected slices, the batch size and warm starts, never on
where a run stopped before or where it runs, so a slice is always fitted together with the
same neighbours: a resumed run redoes unfinished chunks whole, and local and cluster runs
fit the same groups.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

#: With warm starts, a chunk of slices restored together is one cold slice and this many
#: batches warm-started after it.
WARM_BATCHES = 4


def chunks_of(wanted: list[int], batch_size: int, warm_start: bool) -> list[list[int]]:
    """The consecutive slices restored together: one batch, or with warm starts one cold
    slice and :data:`WARM_BATCHES` batches after it."""
    size = 1 + WARM_BATCHES * batch_size if warm_start else batch_size
    return [wanted[k:k + size] for k in range(0, len(wanted), size)]


def restore_slices(config, slices: list[tuple], *, channel_axis: int | None, device: str, threads: int | None,
                   batch_size: int = 1, warm_start: bool = False, cancel=None,
                   on_progress: Callable | None = None,
                   tile_store=None) -> tuple[list[tuple[np.ndarray, dict]], dict]:
    """Consecutive slices, each (image, mask, ground truth), through one :func:`napari_dip.api.run`
    (on a worker or locally): ([(output, record)] of the finished slices in order, info).

    ``info`` holds the device and the network's parameter count. A mask shared by all slices
    (the same object) is passed once; ``on_progress`` gets the run's events; ``threads`` sets
    torch's thread count first (None: as it is); ``tile_store`` keeps the finished tiles of
    large slices across runs (see :func:`napari_dip.api.run`).
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
                                   warm_start=warm_start, cancel=cancel, tile_store=tile_store), on_progress)
    records = {r["slice"]: r for r in report["slices"] if not r.get("partial")}
    info = {"device": report["device"], "parameters": report.get("parameters")}
    return [(output[j], records[j]) for j in range(len(slices)) if j in records], info


def run_local(chunks: list[list[int]], make_args: Callable[[int], tuple], *, config, device: str,
              channel_axis: int | None, batch_size: int, warm_start: bool,
              on_result: Callable[[int, np.ndarray, dict, dict], None], on_event: Callable | None = None,
              cancel: Callable[[], bool] | None = None, total: int | None = None,
              tiles_of: Callable[[list[int]], object] | None = None) -> None:
    """The chunks one after the other in this process; a chunk's results are handed over once
    it is finished (a cancelled chunk hands over nothing; the finished tiles of its large
    slices are kept in ``tiles_of(chunk)``, a tile store, when given). Progress events are
    relayed with the volume's slice indices; ``total`` is the count they give (default: all
    chunks' slices)."""
    from ..api import SliceProgress
    count = total if total is not None else sum(map(len, chunks))
    done = 0
    for chunk in chunks:
        if cancel is not None and cancel():
            return

        def relay(event, chunk=chunk, done=done) -> None:
            if on_event is not None and isinstance(event, SliceProgress):
                on_event(replace(event, slice=chunk[event.slice], position=done + event.position, count=count,
                                 slices=tuple(chunk[j] for j in event.slices)))

        results, info = restore_slices(config, [make_args(i) for i in chunk], channel_axis=channel_axis,
                                       device=device, threads=None, batch_size=batch_size,
                                       warm_start=warm_start, cancel=cancel, on_progress=relay,
                                       tile_store=None if tiles_of is None else tiles_of(chunk))
        if len(results) < len(chunk):  # cancelled part way
            return
        for i, (output, record) in zip(chunk, results):
            on_result(i, output, record, info)
        done += len(chunk)
