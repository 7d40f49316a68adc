"""A task over a volume into a Zarr output, holding one slice at a time: for volumes larger than memory.

The input (a lazy Zarr array, or any array) is read a chunk at a time for its intensity range
and a slice at a time for fitting; each finished slice goes straight into the Zarr output,
which is built beside its final place (the resumable store) and moved there once complete.
"""
from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..api import SliceDone, SliceProgress, run
from ..arrays import Intensity, check_image
from ..core.fit import drain
from ..io import ImageMeta, cast_output, create_zarr
from .cluster import chunks_of, restore_slices, run_on_cluster
from .runner import (SliceFailed, VolumeStart, check_truth, emit, mask_covers_image, report_for, resume,
                     run_header, work_folder)
from .store import ZarrStore, settings_key
from .volume import parse_range, slicing_for


def scan(array, name: str = "image", channel_axis: int | None = None) -> tuple[Intensity, str]:
    """The volume's intensity mapping (as :meth:`Intensity.of` of the whole) and a digest of
    its values, reading one chunk at a time; each chunk is checked like an image (numeric, finite)."""
    chunks = tuple(getattr(array, "chunks", None) or array.shape)
    digest = hashlib.blake2b(f"{tuple(array.shape)}{array.dtype}".encode(), digest_size=32)
    lo, hi = np.inf, -np.inf
    for corner in itertools.product(*(range(0, n, c) for n, c in zip(array.shape, chunks))):
        key = tuple(slice(i, i + c) for i, c in zip(corner, chunks))
        block = check_image(np.asarray(array[key]), name, channel_axis)
        lo, hi = min(lo, block.min()), max(hi, block.max())
        digest.update(np.ascontiguousarray(block).tobytes())
    return Intensity.of(np.array([lo, hi], dtype=array.dtype)), digest.hexdigest()


def process_zarr(config, image, meta: ImageMeta, output: str | Path, *, axis: int | str | None = None,
                 slices: str | None = None, channel_axis: int | None = None, mask=None, ground_truth=None,
                 device: str = "auto", dtype: str = "float32", client=None, retries: int = 2,
                 threads: int | None = None, restart: bool = False, on_event: Callable | None = None,
                 cancel: Callable[[], bool] | None = None, batch_size: int | None = 1, warm_start: bool = False) -> dict:
    """:func:`~napari_dip.batch.process_volume` into a Zarr ``output``, one slice in memory at a time
    (one chunk of slices with ``batch_size`` > 1 or ``warm_start``, see
    :func:`~napari_dip.batch.cluster.chunks_of`).

    Same results, report and resuming as the in-memory path for the same data and settings;
    ``image`` may be a lazy Zarr array larger than memory.
    """
    out_path = Path(output)
    cut = slicing_for(tuple(image.shape), meta, axis=axis, channel_axis=channel_axis)
    start, stop = parse_range(slices, cut.length)
    wanted = cut.flat_indices(start, stop)
    factor = config.factor
    out_cut = replace(cut, shape=cut.output_shape(factor))
    mask = None if mask is None else np.asarray(mask)
    full_mask = mask_covers_image(mask, image.shape, cut)
    check_truth(ground_truth, cut, factor)
    intensity, digest = scan(image, "image", channel_axis)
    config = replace(config, noise=config.noise.rescaled(intensity.offset, intensity.scale))  # fits see unit
    out_type = cast_output(np.zeros(1, np.float32), meta, dtype).dtype
    settings = {"napari_dip": __version__, "network": type(config.network).__name__, "config": asdict(config),
                "perm": cut.perm, "channel_axis": cut.channel_axis, "data": digest, "dtype": str(out_type),
                "ground_truth": None if ground_truth is None else scan(ground_truth, "ground truth")[1]}
    key = settings_key(settings, None if mask is None else np.asarray(mask))
    lead = cut.perm[:len(cut.stack_shape)]
    chunks = tuple(1 if a in lead else n for a, n in enumerate(out_cut.shape))  # one chunk per slice
    spacing = cut.output_spacing(meta.spacing, factor) if factor > 1 else None
    store = ZarrStore(work_folder(out_path), key, out_cut.shape, output=out_path, dtype=out_type,
                      create=lambda path: create_zarr(path, out_cut.shape, out_type, meta, spacing=spacing,
                                                      chunks=chunks))
    if restart or (store.complete and not (out_path.is_dir() and set(wanted) <= store.done.keys())):
        store.reset()
    began = time.perf_counter()
    slice_channel = None if cut.channel_axis is None else 0

    def make_args(i: int) -> tuple:
        """(slice in [0, 1], its mask, its ground truth in the same units) of flat slice ``i``."""
        unit = np.clip(intensity.to_unit(cut.read(image, i)), 0.0, 1.0)
        return (unit, cut.read(mask, i) if full_mask else mask,
                None if ground_truth is None else intensity.to_unit(out_cut.read(ground_truth, i)))

    def put(i: int, output: np.ndarray) -> np.ndarray:
        value = cast_output(intensity.from_unit(output), meta, dtype)
        out_cut.write(store.array, i, value)
        return value

    first, first_mask, first_truth = make_args(wanted[0])
    _, report = drain(run(config, first, channel_axis=slice_channel, mask=first_mask, ground_truth=first_truth,
                          device=device, slices=[]))  # validates, gives the header
    name, header = run_header(meta, out_path, image.shape, out_cut.shape, cut.axis, [start, stop], dtype, store,
                              intensity)
    if store.complete:  # everything wanted is in the output already
        emit(on_event, VolumeStart(name, len(wanted), len(wanted)))
        return report_for(report, header, store, wanted, wanted, {}, began, written=False)
    skipped, todo = resume(store, wanted, name, on_event)
    failed: dict[int, str] = {}
    finished: list[int] = []

    def on_result(i: int, output: np.ndarray, record: dict, info: dict) -> None:
        record["slice"] = i
        value = put(i, output)
        store.mark_done(i, record)
        report.update(info)
        emit(on_event, SliceDone(i, len(finished), len(todo), value, record))
        finished.append(i)

    def on_failure(i: int, error: str) -> None:
        failed[i] = error
        emit(on_event, SliceFailed(i, error))

    if client is None:
        _run_local(config, todo, make_args, on_result, slice_channel, device, on_event, cancel,
                   batch_size, warm_start)
    else:
        run_on_cluster(client, todo, make_args, config=config, device=device, channel_axis=slice_channel,
                       retries=retries, threads=threads, on_result=on_result, on_failure=on_failure,
                       batch_size=batch_size, warm_start=warm_start)
    if "parameters" in report:
        store.record["parameters"] = report["parameters"]
    complete = set(wanted) <= store.done.keys()
    if complete:
        _fill_outside(image, meta, store, cut, out_cut, set(wanted), factor, dtype)
        store.finish(str(out_path.resolve()), set(wanted))
    return report_for(report, header, store, wanted, skipped, failed, began, written=complete)


def _run_local(config, todo: list[int], make_args, on_result, slice_channel, device, on_event, cancel,
               batch_size: int | None, warm_start: bool) -> None:
    """The slices chunk by chunk (:func:`~napari_dip.batch.cluster.chunks_of`) in this process,
    progress relayed; only a chunk's slices are in memory."""
    done = 0
    for chunk in chunks_of(todo, batch_size, warm_start):
        if cancel is not None and cancel():
            return

        def relay(event, chunk=chunk, done=done) -> None:
            if isinstance(event, SliceProgress):
                emit(on_event, replace(event, slice=chunk[event.slice], position=done + event.position,
                                       count=len(todo), slices=tuple(chunk[j] for j in event.slices)))

        results, info = restore_slices(config, [make_args(i) for i in chunk], channel_axis=slice_channel,
                                       device=device, threads=None, batch_size=batch_size,
                                       warm_start=warm_start, cancel=cancel, on_progress=relay)
        for i, (output, record) in zip(chunk, results):
            if record.get("partial"):
                return
            on_result(i, output, record, info)
        done += len(chunk)


def _fill_outside(image, meta: ImageMeta, store: ZarrStore, cut, out_cut, keep: set[int], factor: int,
                  dtype: str) -> None:
    """Slices outside the range: the input's copied through (zero for super-resolution)."""
    done = store.done
    for i in range(cut.count):
        if i in keep:
            continue
        if factor == 1:
            out_cut.write(store.array, i, cast_output(cut.read(image, i), meta, dtype))
        elif i in done:  # restored by an earlier run with another range
            out_cut.write(store.array, i, np.zeros_like(out_cut.read(store.array, i)))
