"""A task over a volume, slice by slice along one axis: resumable, locally or on a Dask cluster."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..api import SliceDone, run
from ..arrays import Intensity, check_image
from ..core.fit import drain
from ..io import ImageMeta, file_format, write_image
from .cluster import run_on_cluster
from .store import SliceStore, settings_key
from .volume import Slicing, parse_range, slicing_for


@dataclass
class VolumeStart:
    """A volume begins: ``total`` slices in the range, ``skipped`` of them already finished."""

    name: str
    total: int
    skipped: int


@dataclass
class SliceFailed:
    """A slice failed on the cluster after its retries."""

    slice: int
    error: str


def work_folder(output: str | Path) -> Path:
    """Where the resumable store of ``output`` lives: a folder beside it."""
    out = Path(output)
    return out.with_name(out.name + ".napari-dip")


def process_volume(config, image: np.ndarray, meta: ImageMeta, output: str | Path, *,
                   axis: int | str | None = None, slices: str | None = None,
                   channel_axis: int | None = None, mask=None, ground_truth=None,
                   device: str = "auto", dtype: str = "float32", client=None, retries: int = 2,
                   threads: int | None = None, restart: bool = False,
                   on_event: Callable | None = None, cancel: Callable[[], bool] | None = None,
                   batch_size: int | None = 1, warm_start: bool = False) -> dict:
    """Restore the slices ``slices`` ('A:B' along ``axis``) of ``image`` into ``output``.

    Finished slices go to a store beside the output (see :func:`work_folder`) as they come;
    a rerun with the same settings skips them. The output (the input's shape, slices outside
    the range copied unchanged; zero for super-resolution) is written atomically once every
    slice of the range is done. ``client``: a Dask client to run slices as tasks on.

    ``batch_size`` slices are fitted at once; ``warm_start`` starts slices from the weights
    fitted to the slices before (see :func:`napari_dip.api.run`; off here unless asked for,
    whatever the preset's default). With the defaults (1, off)
    a slice's result depends on nothing but the slice and the settings, so resumed, local and
    distributed runs give the same volume; otherwise a resumed run, a Zarr output or a cluster
    task starts its slices from its own first slice (:func:`~napari_dip.batch.cluster.chunks_of`).
    Returns the report (also when slices failed or the run was cancelled: ``complete`` False).

    A Zarr ``output`` is written slice by slice with one slice (or one chunk of slices with
    ``batch_size`` > 1 or ``warm_start``) in memory (see
    :mod:`napari_dip.batch.streaming`), so ``image`` may then be a lazy Zarr array larger than
    memory; for other outputs a Zarr input is read whole.
    """
    out_path = Path(output)
    if meta.path and Path(meta.path).resolve() == out_path.resolve():
        raise ValueError(f"the output {out_path} is the input; choose another output so the input is kept")
    config = replace(config, warm_start=bool(warm_start))  # this call decides, not the preset
    if file_format(out_path) == "zarr":
        from .streaming import process_zarr
        return process_zarr(config, image, meta, out_path, axis=axis, slices=slices, channel_axis=channel_axis,
                            mask=mask, ground_truth=ground_truth, device=device, dtype=dtype, client=client,
                            retries=retries, threads=threads, restart=restart, on_event=on_event, cancel=cancel,
                            batch_size=batch_size, warm_start=warm_start)
    image = check_image(np.asarray(image), "image", channel_axis)
    cut = slicing_for(image.shape, meta, axis=axis, channel_axis=channel_axis)
    start, stop = parse_range(slices, cut.length)
    wanted = cut.flat_indices(start, stop)
    factor = config.factor
    intensity = Intensity.of(image)
    config = replace(config, noise=config.noise.rescaled(intensity.offset, intensity.scale))  # fits see unit
    unit = intensity.to_unit(np.ascontiguousarray(cut.view(image)))
    mask_u = _view_mask(mask, image, cut)
    truth_u = _view_truth(ground_truth, cut, factor, intensity)
    out_view_shape = tuple(cut.output_shape(factor)[a] for a in cut.perm)
    key = settings_key({"napari_dip": __version__, "network": type(config.network).__name__,
                        "config": asdict(config), "perm": cut.perm, "channel_axis": cut.channel_axis},
                       unit, mask_u, truth_u)
    store = SliceStore(work_folder(out_path), key, out_view_shape)
    if restart or (store.complete and not (out_path.is_file() and set(wanted) <= store.done.keys())):
        store.reset()
    began = time.perf_counter()
    name, header = run_header(meta, out_path, image.shape, cut.output_shape(factor), cut.axis, [start, stop],
                              dtype, store, intensity)
    view_channel = cut.view_channel_axis
    if store.complete:  # everything wanted is in the final file already
        emit(on_event, VolumeStart(name, len(wanted), len(wanted)))
        _, report = drain(run(config, unit, channel_axis=view_channel, mask=mask_u, ground_truth=truth_u,
                              device=device, slices=[]))
        return report_for(report, header, store, wanted, wanted, {}, began, written=False)
    skipped, todo = resume(store, wanted, name, on_event)
    failed: dict[int, str] = {}
    if client is None or not todo:
        report = _run_local(config, unit, view_channel, mask_u, truth_u, todo, store, device, on_event, cancel,
                            batch_size, warm_start)
    else:
        report = _run_cluster(client, config, unit, cut, mask_u, truth_u, todo, store, device,
                              retries, threads, failed, on_event, batch_size, warm_start)
    if "parameters" in report:
        store.record["parameters"] = report["parameters"]
    complete = set(wanted) <= store.done.keys()
    if complete:
        _write_output(out_path, image, meta, cut, store, wanted, intensity, factor, dtype)
        store.finish(str(out_path.resolve()))
    return report_for(report, header, store, wanted, skipped, failed, began, written=complete)


def run_header(meta: ImageMeta, out_path: Path, input_shape, output_shape, axis, slice_range: list, dtype,
               store, intensity: Intensity) -> tuple[str, dict]:
    """The name shown in progress and the report fields that describe a volume run."""
    name = Path(meta.path).name if meta.path else out_path.name
    return name, dict(input=str(Path(meta.path).resolve()) if meta.path else None, output=str(out_path.resolve()),
                      input_shape=list(input_shape), output_shape=list(output_shape), axis=axis,
                      slice_range=slice_range, dtype=dtype, store=str(store.folder),
                      intensity={"offset": intensity.offset, "scale": intensity.scale})


def resume(store, wanted: list[int], name: str, on_event) -> tuple[list[int], list[int]]:
    """Open the store; (slices already done, slices to do) of ``wanted``; announce the volume."""
    store.open()
    done = store.done
    skipped = [i for i in wanted if i in done]
    emit(on_event, VolumeStart(name, len(wanted), len(skipped)))
    return skipped, [i for i in wanted if i not in done]


def emit(on_event, event) -> None:
    """Hand ``event`` to ``on_event`` if there is one."""
    if on_event is not None:
        on_event(event)


def mask_covers_image(mask, shape: tuple[int, ...], cut: Slicing) -> bool:
    """Whether ``mask`` has the image's shape (else it is one slice's, (Y, X)); an error otherwise."""
    if mask is None:
        return False
    if tuple(mask.shape) == tuple(shape):
        return True
    h, w = (shape[a] for a in cut.in_plane)
    if tuple(mask.shape) != (h, w):
        raise ValueError(f"mask has shape {tuple(mask.shape)}; use the shape of one slice {(h, w)} "
                         f"or of the whole image {tuple(shape)}")
    return False


def check_truth(truth, cut: Slicing, factor: int) -> None:
    """The ground truth must have the restored volume's shape."""
    if truth is not None and tuple(truth.shape) != cut.output_shape(factor):
        raise ValueError(f"ground truth has shape {tuple(truth.shape)}; it must match the restored volume, "
                         f"shape {cut.output_shape(factor)}")


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


def _run_local(config, unit, view_channel, mask_u, truth_u, todo, store, device, on_event, cancel,
               batch_size: int | None, warm_start: bool) -> dict:
    """All slices in this process through one api.run, filling the store's memmap in place."""
    def on(event) -> None:
        if isinstance(event, SliceDone) and not event.record.get("partial"):
            store.mark_done(event.slice, event.record)
        emit(on_event, event)

    _, report = drain(run(config, unit, channel_axis=view_channel, mask=mask_u, ground_truth=truth_u,
                          device=device, slices=todo, out=store.array, cancel=cancel,
                          batch_size=batch_size, warm_start=warm_start), on)
    return report


def _run_cluster(client, config, unit, cut: Slicing, mask_u, truth_u, todo, store, device, retries,
                 threads, failed: dict, on_event, batch_size: int | None, warm_start: bool) -> dict:
    """Slices as Dask tasks; each result is stored as it arrives."""
    _, report = drain(run(config, unit, channel_axis=cut.view_channel_axis, mask=mask_u,
                          ground_truth=truth_u, device=device, slices=[]))  # validates, gives the header
    full_mask = mask_u is not None and mask_u.shape == unit.shape
    finished = []

    def make_args(i: int) -> tuple:
        at = cut.index(i)
        mask = mask_u[at] if full_mask else mask_u
        return unit[at], mask, None if truth_u is None else truth_u[at]

    def on_result(i: int, output: np.ndarray, record: dict, info: dict) -> None:
        record["slice"] = i
        store.array[cut.index(i)] = output
        store.mark_done(i, record)
        report.update(info)  # the worker's device and the network's size
        emit(on_event, SliceDone(i, len(finished), len(todo), output, record))
        finished.append(i)

    def on_failure(i: int, error: str) -> None:
        failed[i] = error
        emit(on_event, SliceFailed(i, error))

    slice_channel = None if cut.channel_axis is None else 0
    run_on_cluster(client, todo, make_args, config=config, device=device, channel_axis=slice_channel,
                   retries=retries, threads=threads, on_result=on_result, on_failure=on_failure,
                   batch_size=batch_size, warm_start=warm_start)
    return report


def _write_output(path: Path, image: np.ndarray, meta: ImageMeta, cut: Slicing, store: SliceStore,
                  wanted: list[int], intensity: Intensity, factor: int, dtype: str) -> None:
    """The input (or zeros when the size changes) with the finished slices put in; atomic."""
    if factor == 1:
        final = np.array(image, dtype=np.float32)
    else:
        final = np.zeros(cut.output_shape(factor), np.float32)
    view = cut.view(final)
    for i in wanted:
        at = cut.index(i)
        view[at] = intensity.from_unit(store.array[at])
    write_image(path, final, meta, spacing=cut.output_spacing(meta.spacing, factor) if factor > 1 else None,
                affine=cut.output_affine(meta.affine, factor), dtype=dtype)


def report_for(api_report: dict, header: dict, store: SliceStore, wanted: list[int], skipped: list[int],
               failed: dict[int, str], began: float, *, written: bool) -> dict:
    """A volume's report: the api's header and settings, then slices done, skipped, failed, missing."""
    done = store.done
    report = {k: v for k, v in api_report.items() if k not in ("slices", "seconds", "input_shape", "intensity")}
    report.update(header)
    report["slices"] = [done[i] for i in wanted if i in done]
    report["processed_slices"] = [i for i in wanted if i in done and i not in skipped]
    report["skipped_slices"] = list(skipped)
    report["failed_slices"] = [{"slice": i, "error": e} for i, e in sorted(failed.items())]
    report["missing_slices"] = [i for i in wanted if i not in done]
    report.setdefault("parameters", store.record.get("parameters"))
    report["seconds"] = time.perf_counter() - began
    report["complete"] = not report["missing_slices"]
    report["written"] = written
    if not report["complete"]:
        report["output"] = None
    return report
