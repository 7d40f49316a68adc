"""A task over a volume into a Zarr output, holding one chunk of slices at a time: for volumes
larger than memory.

The input (a lazy Zarr array, or any array) is read a chunk at a time for its intensity range
and a slice at a time for fitting; each finished slice goes straight into the Zarr output,
which is built beside its final place (the resumable store) and moved there once complete.
"""
from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..api import run
from ..arrays import Intensity, check_image, parse_slices, slicing_for
from ..core.fit import drain
from ..io import ImageMeta, cast_output, create_zarr
from .lock import output_lock
from .steps import (Notice, VolumeStart, check_memory, check_output, check_truth, emit, key_settings,
                    make_plan, mask_covers_image, nothing_left_on_failure, report_for, restore, resume,
                    run_header, slice_range, still_up_to_date, work_folder)
from .store import ZarrStore, settings_key


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
        digest.update(np.ascontiguousarray(block))  # its buffer: no copy of a contiguous block
    return Intensity.of(np.array([lo, hi], dtype=array.dtype)), digest.hexdigest()


def process_zarr(config, image, meta: ImageMeta, output: str | Path, *, axis: int | str | None = None,
                 slices: str | None = None, channel_axis: int | None = None, mask=None, ground_truth=None,
                 device: str = "auto", dtype: str = "float32", client=None, retries: int = 2,
                 threads: int | None = None, restart: bool = False, on_event: Callable | None = None,
                 cancel: Callable[[], bool] | None = None, batch_size: int | None = 1,
                 wait: bool = False) -> dict:
    """:func:`~napari_dip.batch.process_volume` into a Zarr ``output`` (``config.warm_start``
    decides warm starts), one chunk of slices in memory at a time (see
    :func:`~napari_dip.batch.walk.chunks_of`).

    Same checks, locking, results, report and resuming as the in-memory path for the same
    data and settings; ``image`` may be a lazy Zarr array larger than memory.
    """
    out_path = Path(output)
    cut = slicing_for(tuple(image.shape), meta, axis=axis, channel_axis=channel_axis)
    along = parse_slices(slices, cut.length)
    wanted = cut.flat_indices(along)
    factor = config.factor
    out_cut = replace(cut, shape=cut.output_shape(factor))
    mask = None if mask is None else np.asarray(mask)
    full_mask = mask_covers_image(mask, image.shape, cut)
    check_truth(ground_truth, cut, factor)
    intensity, digest = scan(image, "image", channel_axis)
    config = replace(config, noise=config.noise.rescaled(intensity.offset, intensity.scale))  # fits see unit
    out_type = cast_output(np.zeros(1, np.float32), meta, dtype).dtype
    slice_channel = None if cut.channel_axis is None else 0

    def make_args(i: int) -> tuple:
        """(slice in [0, 1], its mask, its ground truth in the same units) of flat slice ``i``."""
        unit = np.clip(intensity.to_unit(cut.read(image, i)), 0.0, 1.0)
        return (unit, cut.read(mask, i) if full_mask else mask,
                None if ground_truth is None else intensity.to_unit(out_cut.read(ground_truth, i)))

    first, first_mask, first_truth = make_args(wanted[0])
    # settings, device and sizes are checked here (nothing is fitted); this gives the report's header
    _, report = drain(run(config, first, channel_axis=slice_channel, mask=first_mask, ground_truth=first_truth,
                          device=device, slices=[]))
    channels = 1 if cut.channel_axis is None else image.shape[cut.channel_axis]
    size = (image.shape[cut.in_plane[0]], image.shape[cut.in_plane[1]])
    plan = make_plan(config, channels, size, batch_size=batch_size, warm_start=config.warm_start,
                     device=device, client=client, threads=threads)
    if client is None:
        check_memory(config, channels, size, min(plan.batch_size, len(wanted)), device)
    folder = work_folder(out_path)
    partial = folder / out_path.name
    check_output(out_path, out_cut.shape, out_type, cut.channel_axis,
                 0 if partial.is_dir() else int(np.prod(out_cut.shape, dtype=np.int64)) * out_type.itemsize)
    settings = key_settings(config, cut, meta, plan, wanted, dtype, out_type, "zarr")
    settings.update(data=digest, ground_truth=None if ground_truth is None else scan(ground_truth, "ground truth")[1])
    key = settings_key(settings, mask)
    lead = cut.perm[:len(cut.stack_shape)]
    chunks = tuple(1 if a in lead else n for a, n in enumerate(out_cut.shape))  # one chunk per slice
    spacing = cut.output_spacing(meta.spacing, factor) if factor > 1 else None
    notices: list[str] = []

    def notice(text: str) -> None:
        notices.append(text)
        emit(on_event, Notice(text))

    with output_lock(out_path, wait=wait, on_notice=notice), nothing_left_on_failure(folder):
        store = ZarrStore(folder, key, out_cut.shape, output=out_path, dtype=out_type, cut=out_cut,
                          create=lambda path: create_zarr(path, out_cut.shape, out_type, meta, spacing=spacing,
                                                          chunks=chunks))
        up_to_date = still_up_to_date(store, out_path, restart)
        began = time.perf_counter()
        name, header = run_header(meta, out_path, image.shape, out_cut.shape, cut.axis, slice_range(along), dtype,
                                  store, intensity, plan)
        failed: dict[int, str] = {}
        if up_to_date:  # everything wanted is in the output already
            emit(on_event, VolumeStart(name, len(wanted), len(wanted)))
            skipped = wanted
        else:
            skipped, todo = resume(store, plan, wanted, name, on_event)

            def put(i: int, output: np.ndarray) -> np.ndarray:
                value = cast_output(intensity.from_unit(output), meta, dtype)
                store.write(i, value)
                return value

            restore(todo, make_args, store, report, config=config, plan=plan, device=device,
                    channel_axis=slice_channel, client=client, retries=retries, threads=threads, put=put,
                    failed=failed, on_event=on_event, cancel=cancel)
            if "parameters" in report:
                store.record["parameters"] = report["parameters"]
        complete = set(wanted) <= store.done.keys()
        written = complete and not up_to_date
        if written:
            _fill_outside(image, meta, store, cut, out_cut, set(wanted), factor, dtype)
            store.finish(str(out_path.resolve()), set(wanted))
        result = report_for(report, header, store, wanted, skipped, failed, began, written=written)
        result["notices"][:0] = notices
        return result


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
