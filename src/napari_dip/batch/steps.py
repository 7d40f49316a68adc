"""The steps every volume run shares, in memory or into Zarr: events, the checks made before
any compute, the plan of chunks and what it keys, resuming, walking the chunks, the report."""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .. import __version__
from ..arrays import Intensity, Slicing, padded_size
from ..io import ImageMeta, check_output_format, check_writable
from .cluster import run_on_cluster
from .walk import chunks_of, run_local

#: The share of the free memory a fit may plan to use.
MEMORY_SHARE = 0.9


class NotEnoughMemory(ValueError):
    """The fit as configured needs more memory than the device has free."""


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


@dataclass
class Notice:
    """Something the user must know about a run (a lock taken over, slices fitted again)."""

    text: str


def emit(on_event, event) -> None:
    """Hand ``event`` to ``on_event`` if there is one."""
    if on_event is not None:
        on_event(event)


def work_folder(output: str | Path) -> Path:
    """Where the resumable store of ``output`` lives: a folder beside it."""
    out = Path(output)
    return out.with_name(out.name + ".napari-dip")


# --- checks before any compute ---------------------------------------------------------------

def check_output(out_path: Path, out_shape: tuple[int, ...], stored: np.dtype, channel_axis: int | None,
                 store_bytes: int) -> None:
    """The output can be written: its folder, its format for this result, room on the disk
    for the resumable store (``store_bytes``) and the output."""
    check_output_format(out_path, out_shape, stored, channel_axis)
    check_writable(out_path)
    output_bytes = int(np.prod(out_shape, dtype=np.int64)) * stored.itemsize
    need = store_bytes + output_bytes
    folder = out_path.resolve().parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        raise ValueError(f"not enough room on the disk for {out_path.name}: it needs about {_size(need)} "
                         f"(resumable store {_size(store_bytes)}, output {_size(output_bytes)} uncompressed), "
                         f"{_size(free)} are free in {folder}; free some space or write elsewhere")


def fit_bytes(config, channels: int, size: tuple[int, int], batch: int) -> int:
    """Memory a fit of ``batch`` slices of ``size`` (Y, X, before padding) needs as configured.

    The one place that estimates it (the tiling work may refine the estimate here).
    """
    from ..core.fit import problem_bytes
    h, w = padded_size(config.network, size[0], size[1], config.factor)
    out = (h * config.factor, w * config.factor)
    one = problem_bytes(lambda: config.network.build(channels, 1), config.network.code_shape(*out))
    return one * batch


def check_memory(config, channels: int, size: tuple[int, int], batch: int, device: str) -> None:
    """Refuse, before any compute, a fit the device's free memory cannot hold."""
    from ..api import resolve_device
    from ..core.memory import plan
    dev = resolve_device(device)
    h, w = padded_size(config.network, size[0], size[1], config.factor)
    tiling = plan((h * config.factor, w * config.factor), config.network, channels=channels, factor=config.factor,
                  device=dev, max_memory=config.extra.get("max_memory"), tile_size=config.extra.get("tile_size"),
                  precision=config.fit.precision)  # refuses when not even one tile fits the budget
    if tiling.tile is not None:
        return  # api.run fits the slices as tiles within the budget
    need = fit_bytes(config, channels, size, batch)
    if dev.type == "cuda":
        import torch
        free = torch.cuda.mem_get_info(dev)[0]
    else:
        import psutil
        free = psutil.virtual_memory().available
    if need > MEMORY_SHARE * free:
        fix = ("fit fewer slices at once (batch size 1)" if batch > 1 else
               "restore a smaller crop or tile the image, or use a smaller network (e.g. the fast preset)")
        raise NotEnoughMemory(f"the fit needs about {_size(need)} of memory ({size[0]}x{size[1]} pixels, "
                          f"{batch} slice(s) at once), only {_size(free)} are free on {dev.type}; {fix}")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


@contextlib.contextmanager
def nothing_left_on_failure(folder: Path) -> Iterator[None]:
    """A run that fails before it stored a slice leaves no store folder behind."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.exists() and not _holds_slices(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _holds_slices(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "record.json").read_text()).get("done"))
    except (OSError, ValueError, AttributeError):
        return False


# --- the plan: chunks, and everything that changes the output in the resume key -------------

@dataclass(frozen=True)
class Plan:
    """How the slices are grouped and run; part of the resume key, since results depend on it."""

    batch_size: int
    warm_start: bool
    threads: int | str   # torch threads per fit ('worker default' on an existing cluster)
    device: str

    def chunks(self, wanted: list[int]) -> list[list[int]]:
        return chunks_of(wanted, self.batch_size, self.warm_start)


def make_plan(config, channels: int, size: tuple[int, int], *, batch_size: int | None, warm_start: bool,
              device: str, client, threads: int | None) -> Plan:
    """Resolve the automatic batch size, the device and the thread count once, for the whole run."""
    import torch

    from ..api import auto_batch_size, resolve_device
    dev = resolve_device(device) if client is None else None
    if batch_size is None:
        h, w = padded_size(config.network, size[0], size[1], config.factor)
        batch_size = auto_batch_size(config, channels, (h * config.factor, w * config.factor),
                                     dev if dev is not None else resolve_device("cpu"))
    if client is None:
        used = torch.get_num_threads()
    else:
        used = threads if threads else "worker default"
    return Plan(int(batch_size), bool(warm_start), used, dev.type if dev is not None else f"workers: {device}")


def meta_fingerprint(meta: ImageMeta) -> str:
    """What of the input's metadata goes into the output file (spacing, affine, header...)."""
    header = getattr(meta.header, "binaryblock", None)
    fields = {"format": meta.format, "dtype": meta.dtype, "channel_axis": meta.channel_axis,
              "spacing": meta.spacing, "unit": meta.unit, "axes": meta.axes, "alpha": meta.alpha,
              "affine": None if meta.affine is None else np.asarray(meta.affine).tolist(),
              "header": None if header is None else hashlib.sha256(header).hexdigest(),
              "extra": json.dumps(meta.extra, sort_keys=True, default=str)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def key_settings(config, cut: Slicing, meta: ImageMeta, plan: Plan, wanted: list[int], dtype: str,
                 stored: np.dtype, out_format: str) -> dict:
    """Every setting that changes the output file: the fit's, the plan's, the slices, the output type."""
    return {"napari_dip": __version__, "network": type(config.network).__name__, "config": asdict(config),
            "perm": cut.perm, "channel_axis": cut.channel_axis, "plan": asdict(plan), "slices": wanted,
            "dtype": dtype, "stored": str(stored), "format": out_format, "meta": meta_fingerprint(meta)}


# --- resuming and walking ----------------------------------------------------------------------

def still_up_to_date(store, out_path: Path, restart: bool) -> bool:
    """Whether a finished run's output is still the one it wrote; otherwise the store starts
    over (with a note unless ``restart`` asked for it)."""
    if not restart and store.output_intact(out_path):
        return True
    if store.complete:
        if not restart:
            store.notices.append(f"{out_path.name} was changed or removed since this run wrote it; "
                                 "restoring it again")
        store.reset()
    return False


def resume(store, plan: Plan, wanted: list[int], name: str, on_event) -> tuple[list[int], list[list[int]]]:
    """Open the store (verifying what it holds); (slices kept, chunks to fit); announce the volume.

    A chunk is fitted whole or not at all: finished slices of a chunk that did not finish are
    fitted again with it, so every slice is fitted with the same neighbours as in a run that
    never stopped.
    """
    store.open()
    done = store.done
    todo = [c for c in plan.chunks(wanted) if not all(i in done for i in c)]
    again = [i for c in todo for i in c if i in done]
    if again:
        store.forget(again)
        store.notices.append(f"{len(again)} finished slice(s) are fitted again with the rest of their "
                             f"chunk (batches and warm starts fit a chunk together)")
        for i in again:
            store.redone.setdefault(i, "its chunk had not finished")
    for text in store.notices:
        emit(on_event, Notice(text))
    done = store.done
    skipped = [i for i in wanted if i in done]
    emit(on_event, VolumeStart(name, len(wanted), len(skipped)))
    return skipped, todo


def restore(todo: list[list[int]], make_args: Callable[[int], tuple], store, report: dict, *, config,
            plan: Plan, device: str, channel_axis: int | None, client, retries: int, threads: int | None,
            put: Callable[[int, np.ndarray], np.ndarray], failed: dict, on_event, cancel) -> None:
    """Fit the chunks ``todo`` here or on ``client``; store every finished slice as it comes
    (and here every finished tile of a slice fitted in tiles)."""
    from ..api import SliceDone
    count = sum(map(len, todo))
    finished: list[int] = []

    def on_result(i: int, output: np.ndarray, record: dict, info: dict) -> None:
        record["slice"] = i
        value = put(i, output)
        store.mark_done(i, record)
        report.update(info)  # the device used and the network's size
        emit(on_event, SliceDone(i, len(finished), count, value, record))
        finished.append(i)

    def on_failure(i: int, error: str) -> None:
        failed[i] = error
        emit(on_event, SliceFailed(i, error))

    common = dict(config=config, device=device, channel_axis=channel_axis, batch_size=plan.batch_size,
                  warm_start=plan.warm_start, on_result=on_result)
    if client is None:
        run_local(todo, make_args, on_event=on_event, cancel=cancel, total=count, tiles_of=store.tiles_of, **common)
    else:
        run_on_cluster(client, todo, make_args, retries=retries, threads=threads, on_failure=on_failure, **common)


# --- the report ----------------------------------------------------------------------------------

def run_header(meta: ImageMeta, out_path: Path, input_shape, output_shape, axis, slice_range: list, dtype,
               store, intensity: Intensity, plan: Plan) -> tuple[str, dict]:
    """The name shown in progress and the report fields that describe a volume run."""
    name = Path(meta.path).name if meta.path else out_path.name
    return name, dict(input=str(Path(meta.path).resolve()) if meta.path else None, output=str(out_path.resolve()),
                      input_shape=list(input_shape), output_shape=list(output_shape), axis=axis,
                      slice_range=slice_range, dtype=dtype, store=str(store.folder),
                      intensity={"offset": intensity.offset, "scale": intensity.scale}, plan=asdict(plan))


def slice_range(indices: list[int]) -> list[int]:
    """[start, stop] of contiguous indices along the axis, else the indices themselves."""
    if indices == list(range(indices[0], indices[-1] + 1)):
        return [indices[0], indices[-1] + 1]
    return list(indices)


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


def report_for(api_report: dict, header: dict, store, wanted: list[int], skipped: list[int],
               failed: dict[int, str], began: float, *, written: bool) -> dict:
    """A volume's report: the api's header and settings, then slices done, skipped, redone
    (with why), failed and missing, and the notices shown during the run."""
    done = store.done
    report = {k: v for k, v in api_report.items() if k not in ("slices", "seconds", "input_shape", "intensity")}
    report.update(header)
    report["slices"] = [done[i] for i in wanted if i in done]
    report["processed_slices"] = [i for i in wanted if i in done and i not in skipped]
    report["skipped_slices"] = list(skipped)
    report["redone_slices"] = [{"slice": i, "reason": r} for i, r in sorted(store.redone.items())]
    report["failed_slices"] = [{"slice": i, "error": e} for i, e in sorted(failed.items())]
    report["missing_slices"] = [i for i in wanted if i not in done]
    report["notices"] = list(store.notices)
    report.setdefault("parameters", store.record.get("parameters"))
    report["seconds"] = time.perf_counter() - began
    report["complete"] = not report["missing_slices"]
    report["written"] = written
    if not report["complete"]:
        report["output"] = None
    return report
