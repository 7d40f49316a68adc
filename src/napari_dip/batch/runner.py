"""A task over a volume, slice by slice along one axis: resumable, locally or on a Dask cluster."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..api import run
from ..arrays import Intensity, Slicing, check_image, parse_slices, slicing_for
from ..core.fit import drain
from ..io import (OUTPUT_DTYPES, ImageMeta, cast_output, file_format, open_streamed, release_pages, stored_dtype,
                  streams, write_image)
from .lock import output_lock
from .steps import (Notice, VolumeStart, check_memory, check_output, check_truth, emit, key_settings,
                    make_plan, mask_covers_image, nothing_left_on_failure, report_for, restore, resume,
                    run_header, slice_range, still_up_to_date, work_folder)
from .store import STORE, SliceStore, settings_key
from .streaming import process_zarr


def process_volume(config, image: np.ndarray, meta: ImageMeta, output: str | Path, *,
                   axis: int | str | None = None, slices: str | None = None,
                   channel_axis: int | None = None, mask=None, ground_truth=None,
                   device: str = "auto", dtype: str = "float32", client=None, retries: int = 2,
                   threads: int | None = None, restart: bool = False,
                   on_event: Callable | None = None, cancel: Callable[[], bool] | None = None,
                   batch_size: int | None = 1, warm_start: bool = False, wait: bool = False) -> dict:
    """Restore the slices ``slices`` (indices and ranges 'A:B' along ``axis``, see
    :func:`~napari_dip.arrays.parse_slices`) of ``image`` into ``output``.

    Every check (settings, device, sizes, the output's folder, format, disk room, memory) is
    made before any compute; a refused run leaves nothing behind. The output has one run at a
    time (:func:`~napari_dip.batch.lock.output_lock`; ``wait`` waits for another run instead
    of refusing). Finished slices go to a store beside the output (see :func:`work_folder`)
    with their checksums as they come; a rerun with the same settings verifies and skips
    them. The output (the input's shape, slices outside the range copied unchanged; zero for
    super-resolution) is written atomically once every slice of the range is done.
    ``client``: a Dask client to run slices as tasks on. An RGBA image's alpha channel
    (``meta.alpha``) is carried through, not fitted.

    Slices are fitted in fixed chunks (:func:`~napari_dip.batch.walk.chunks_of`: ``batch_size``
    slices, or with ``warm_start`` one cold slice and a few batches warm-started after it;
    ``None``: the batch size memory allows, resolved once). A slice's result depends on its
    chunk, the settings, the device and torch's thread count; all of these are in the resume
    key, so a resumed run never mixes slices fitted differently.
    Returns the report (also when slices failed or the run was cancelled: ``complete`` False).

    A Zarr ``output`` is written slice by slice with one chunk of slices in memory (see
    :mod:`napari_dip.batch.streaming`), so ``image`` may then be a lazy Zarr array larger than
    memory; for other outputs a Zarr input is read whole.
    """
    out_path = Path(output)
    if meta.path and Path(meta.path).resolve() == out_path.resolve():
        raise ValueError(f"the output {out_path} is the input; choose another output so the input is kept")
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"unknown output dtype {dtype!r}; choose one of {', '.join(OUTPUT_DTYPES)}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    config = replace(config, warm_start=bool(warm_start))  # this call decides, not the preset
    options = dict(axis=axis, slices=slices, channel_axis=channel_axis, mask=mask, ground_truth=ground_truth,
                   device=device, dtype=dtype, client=client, retries=retries, threads=threads, restart=restart,
                   on_event=on_event, cancel=cancel, batch_size=batch_size, wait=wait)
    if file_format(out_path) == "zarr":
        return process_zarr(config, image, meta, out_path, **options)
    image = check_image(np.asarray(image), "image", channel_axis)
    colour, alpha = split_alpha(image, meta, channel_axis)
    cut = slicing_for(colour.shape, meta, axis=axis, channel_axis=channel_axis)
    along = parse_slices(slices, cut.length)
    wanted = cut.flat_indices(along)
    factor = config.factor
    intensity = Intensity.of(colour)
    config = replace(config, noise=config.noise.rescaled(intensity.offset, intensity.scale))  # fits see unit
    view = cut.view(colour)  # no copy: each slice is converted to [0, 1] alone when it is fitted
    mask_u = _view_mask(mask, colour, cut)
    truth_u = _view_truth(ground_truth, cut, factor, intensity)
    view_channel = cut.view_channel_axis
    out_view_shape = tuple(cut.output_shape(factor)[a] for a in cut.perm)
    # Settings, device, sizes and every slice's mask are checked here; nothing is fitted, so
    # nothing is written into the output, a placeholder of no memory. This gives the report's header.
    _, report = drain(run(config, view, channel_axis=view_channel, mask=mask_u, ground_truth=truth_u,
                          device=device, slices=[], out=np.broadcast_to(np.float32(0), out_view_shape)))
    channels = 1 if cut.channel_axis is None else colour.shape[cut.channel_axis]
    size = (colour.shape[cut.in_plane[0]], colour.shape[cut.in_plane[1]])
    plan = make_plan(config, channels, size, batch_size=batch_size, warm_start=warm_start, device=device,
                     client=client, threads=threads)
    if client is None:
        check_memory(config, channels, size, min(plan.batch_size, len(wanted)), device)
    stored = stored_dtype(out_path, meta, dtype)
    folder = work_folder(out_path)
    store_bytes = 0 if (folder / STORE).is_file() else int(np.prod(out_view_shape, dtype=np.int64)) * 4
    store_bytes += _assembly_bytes(out_path, out_view_shape, meta)  # the output assembled on disk, when large
    full_shape = tuple(n * factor if a in cut.in_plane else n for a, n in enumerate(image.shape))
    check_output(out_path, full_shape, stored, cut.channel_axis, store_bytes)
    key = settings_key(key_settings(config, cut, meta, plan, wanted, dtype, stored, "file"), colour, mask_u, truth_u)
    notices: list[str] = []

    def notice(text: str) -> None:
        notices.append(text)
        emit(on_event, Notice(text))

    with output_lock(out_path, wait=wait, on_notice=notice), nothing_left_on_failure(folder):
        store = SliceStore(folder, key, out_view_shape, len(cut.stack_shape))
        up_to_date = still_up_to_date(store, out_path, restart)
        began = time.perf_counter()
        name, header = run_header(meta, out_path, image.shape, full_shape, cut.axis, slice_range(along), dtype,
                                  store, intensity, plan)
        failed: dict[int, str] = {}
        if up_to_date:  # everything wanted is in the final file already
            emit(on_event, VolumeStart(name, len(wanted), len(wanted)))
            skipped = wanted
        else:
            skipped, todo = resume(store, plan, wanted, name, on_event)
            full_mask = mask_u is not None and mask_u.shape == view.shape

            def make_args(i: int) -> tuple:
                at = cut.index(i)
                return (intensity.to_unit(view[at]), mask_u[at] if full_mask else mask_u,
                        None if truth_u is None else truth_u[at])

            def put(i: int, output: np.ndarray) -> np.ndarray:
                store.write(i, output)
                return intensity.from_unit(output)

            restore(todo, make_args, store, report, config=config, plan=plan, device=device,
                    channel_axis=None if cut.channel_axis is None else 0, client=client, retries=retries,
                    threads=threads, put=put, failed=failed, on_event=on_event, cancel=cancel)
            if "parameters" in report:
                store.record["parameters"] = report["parameters"]
        complete = set(wanted) <= store.done.keys()
        written = complete and not up_to_date
        if written:
            _write_output(out_path, colour, alpha, meta, cut, store, wanted, intensity, factor, dtype)
            store.finish(str(out_path.resolve()))
        result = report_for(report, header, store, wanted, skipped, failed, began, written=written)
        result["notices"][:0] = notices
        return result


def split_alpha(image: np.ndarray, meta: ImageMeta, channel_axis: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour channels, alpha channel or None): the alpha of an RGBA image is not fitted."""
    if not meta.alpha or channel_axis is None or image.shape[channel_axis] != 4:
        return image, None
    return np.take(image, [0, 1, 2], axis=channel_axis), np.take(image, [3], axis=channel_axis)


def _view_mask(mask, image: np.ndarray, cut: Slicing):
    """A mask for the transposed view: (Y, X) of a slice as it is, or the volume's shape."""
    if mask is None:
        return None
    m = np.asarray(mask)
    return np.ascontiguousarray(cut.view(m)) if mask_covers_image(m, image.shape, cut) else m


def _view_truth(truth, cut: Slicing, factor: int, intensity: Intensity):
    if truth is None:
        return None
    t = np.asarray(truth)
    check_truth(t, cut, factor)
    return intensity.to_unit(np.ascontiguousarray(cut.view(t)))


def _write_output(path: Path, colour: np.ndarray, alpha: np.ndarray | None, meta: ImageMeta, cut: Slicing,
                  store: SliceStore, wanted: list[int], intensity: Intensity, factor: int, dtype: str) -> None:
    """The input (or zeros when the size changes) with the finished slices put in, and the
    alpha channel carried through (repeated to the new size for super-resolution); atomic.

    TIFF and NPY outputs are filled slice by slice in a memory map of the new file itself, in
    the type stored (:func:`~napari_dip.io.open_streamed`: renamed into place once complete):
    no copy of the output is held in RAM. Others are assembled as float32 and written by
    :func:`~napari_dip.io.write_image`; a large one in a memory map beside the store
    (:data:`ASSEMBLY`). Both give the same file for the same slices.
    """
    shape = cut.output_shape(factor)
    spacing = cut.output_spacing(meta.spacing, factor) if factor > 1 else None
    if streams(path, meta):
        with open_streamed(path, shape, stored_dtype(path, meta, dtype), meta, spacing=spacing) as final:
            _fill(final, colour, cut, store, wanted, intensity, factor, lambda x: cast_output(x, meta, dtype))
        return
    scratch = store.folder / ASSEMBLY if _assembly_bytes(path, shape, meta) else None
    if scratch is None:
        final = np.zeros(shape, np.float32)
    else:
        final = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=shape)
    try:
        _fill(final, colour, cut, store, wanted, intensity, factor, lambda x: x)
        if alpha is not None:
            for a in cut.in_plane:
                alpha = np.repeat(alpha, factor, axis=a)
            final = np.concatenate([final, alpha.astype(np.float32)], axis=cut.channel_axis)
        write_image(path, final, meta, spacing=spacing, affine=cut.output_affine(meta.affine, factor), dtype=dtype)
    finally:
        del final
        if scratch is not None:
            scratch.unlink(missing_ok=True)


ASSEMBLY = "output.npy"
ASSEMBLE_ON_DISK_BYTES = 256 * 2 ** 20
"""Outputs larger than this (float32) that are not filled in place (NIfTI) are assembled in a
memory map (:data:`ASSEMBLY` in the store folder) before they are written: a large image is
then not held in RAM a second time."""


def _assembly_bytes(path: Path, shape: tuple[int, ...], meta: ImageMeta) -> int:
    """The disk a large output's assembly takes beside the store (0: none, the output is
    filled in place or assembled in RAM); RGBA outputs are assembled in RAM (their alpha
    channel is joined on)."""
    n = int(np.prod(shape, dtype=np.int64)) * 4
    return n if n > ASSEMBLE_ON_DISK_BYTES and not meta.alpha and not streams(path, meta) else 0


def _fill(final: np.ndarray, colour: np.ndarray, cut: Slicing, store: SliceStore, wanted: list[int],
          intensity: Intensity, factor: int, cast) -> None:
    """Every slice of ``final`` (the output's shape, [C] of the colour channels): restored
    slices from the store, the others copied from ``colour`` (zero for super-resolution), each
    as float32 in the input's units through ``cast``, one slice at a time. When the slices lie
    one after the other (the slicing axis leads), each is dropped from resident memory once
    written, and so is its part of a memory-mapped input once read; otherwise every slice
    touches every page and the OS writes them back."""
    out, source = cut.view(final), cut.view(colour)
    keep = set(wanted)
    in_order = list(cut.perm) == sorted(cut.perm)
    for i in range(cut.count):
        at = cut.index(i)
        if i in keep:
            out[at] = cast(intensity.from_unit(store.read(i)))
        elif factor == 1:
            out[at] = cast(source[at].astype(np.float32))
        release_pages(store.array)
        if in_order:
            release_pages(final)
            release_pages(colour)
