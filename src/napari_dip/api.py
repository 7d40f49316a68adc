"""Public functions on NumPy arrays: denoise, super_resolve, inpaint, and the generator behind them.

Every function walks a stack slice by slice through :func:`run`, which the napari widgets,
the CLI and the batch runner use too.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Generator, Sequence

import numpy as np

from . import __version__
from .arrays import Intensity, Layout, as_slices, check_image, from_slices, layout_of, pad_reflect, padded_size
from .core.fit import (FitResult, FitSettings, Progress, drain, fit, parallel_groups, problem_bytes,
                       resolve_device, resolve_precision)
from .core.nets.factory import copy_problem
from .core.stopping import DataFitStop, smoothed_loss
from .core.task import TaskConfig, build_problem, make_config
from .tiled import tile_slices

__all__ = ["denoise", "super_resolve", "inpaint", "run", "make_config", "SliceProgress", "SliceDone"]

log = logging.getLogger("napari_dip")
TIMED_ITERATIONS = 5  # a tiled run's time per iteration is measured over its first fit's first iterations
WARM_LR_RAMP = 25
"""Iterations over which a warm-started fit's learning rate rises to the configured one. With
fresh Adam at the full rate, warm slices needed 1.5-1.8x as many iterations to reach the first
slice's data fit, at the same PSNR (docs/speed.md, "Warm starts")."""


@dataclass
class SliceProgress:
    """Progress within slice number ``slice`` (the ``position``-th of ``count`` to do).

    Slices fitted together in one batch share one event per iteration: ``slice`` and
    ``position`` are the batch's first, ``slices`` lists all of them, and the lists in
    ``progress`` (and its preview) hold one entry per slice of the batch.
    """

    slice: int
    position: int
    count: int
    progress: Progress
    slices: tuple[int, ...] = ()
    tiles: tuple[int, ...] = ()


@dataclass
class SliceDone:
    """A finished slice: its output (C, H, W) in the input's intensity units and its record."""

    slice: int
    position: int
    count: int
    output: np.ndarray
    record: dict


def _torch():
    import torch
    return torch


def _metrics(x: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from .core.metrics import psnr, ssim
    torch = _torch()
    a, b = torch.from_numpy(x[None]), torch.from_numpy(ref[None])
    s = float(ssim(a, b)[0]) if min(x.shape[-2:]) >= 7 else float("nan")
    return float(psnr(a, b)[0]), s


def _baseline(observed: np.ndarray, config: TaskConfig) -> np.ndarray:
    """What the input alone offers: itself, or a bicubic upsampling for super-resolution."""
    if config.factor == 1:
        return observed
    torch = _torch()
    t = torch.from_numpy(observed[None])
    up = torch.nn.functional.interpolate(t, scale_factor=config.factor, mode="bicubic", align_corners=False)
    return up.clamp(0, 1)[0].numpy()


def run(config: TaskConfig, image, *, channel_axis: int | None = None, mask=None, ground_truth=None,
        device: str = "auto", slices: Sequence[int] | None = None, out: np.ndarray | None = None,
        cancel: Callable[[], bool] | None = None, batch_size: int | None = None,
        warm_start: bool | None = None, tile_size: int | None = None, max_memory=None,
        ) -> Generator[SliceProgress | SliceDone, None, tuple[np.ndarray, dict]]:
    """Restore ``image`` slice by slice; yield progress and finished slices; return (output, report).

    ``slices`` selects flat slice indices over the non-spatial axes (default: all). The output
    has the input's shape with Y and X multiplied by the factor, float32 in the input's
    intensity units; slices not processed are copied from ``out`` if given, otherwise from the
    input (denoising, inpainting) or left at 0 (super-resolution). The input is never modified.

    ``batch_size`` slices are fitted at once as independent networks (the same result per slice
    as one at a time at the same precision; with ``precision='auto'`` each fit's precision is
    chosen by its size: a batch of at least 128x128 pixels in all may run in bf16 where a
    single slice runs in fp32; the report gives it per slice); ``None`` picks it from the free
    memory and the slice size (see :func:`auto_batch_size`); on the CPU a batch is fitted as
    parallel groups, one per torch thread (``config.fit.parallel``), so that it uses every
    core. With ``warm_start`` (default: ``config.warm_start``, on for denoising) the first
    slice is fitted alone with the configured rule; every later batch starts from the weights
    fitted to the last slice before it and each of its slices stops once its data fit
    (smoothed loss) reaches the first slice's at the iteration its rule chose
    (:class:`~napari_dip.core.stopping.DataFitStop`; with ``stop='oracle'`` warm slices keep
    the oracle); warm fits ramp their learning rate up over :data:`WARM_LR_RAMP` iterations
    (unless ``config.fit.lr_ramp`` sets a ramp).

    ``config.noise`` (denoising; see :mod:`napari_dip.core.noise_setup`): with a noise model,
    each slice's model is estimated from the slice in the input's units (or given), carried
    into the fit's units and used as its loss; each slice's record gives its model.

    Slices too large for ``max_memory`` (bytes or a string like '4GB'; default: a safe share of
    the free RAM or GPU memory, see :mod:`napari_dip.core.memory`), or any with ``tile_size``
    (a tile side in output pixels), are cut into overlapping tiles fitted as problems like
    slices (batches, parallel groups, warm starts, per-tile stopping) and blended back with a
    cosine window (:mod:`napari_dip.tiled`), each from fresh weights (no warm start); then ``position`` and ``count`` of the events count
    tiles, ``tiles`` names each problem's tile, and previews are left out (finished tiles are
    blended into the output as they come). ``report['tiling']`` says what ran.
    """
    image = check_image(image, "image", channel_axis)
    warm_start = config.warm_start if warm_start is None else bool(warm_start)
    layout = layout_of(image, channel_axis)
    intensity = Intensity.of(image)
    factor = config.factor
    src = as_slices(image, layout)
    gt = _prepare_aux(ground_truth, "ground_truth", layout, channel_axis, factor)
    msk = _prepare_mask(mask, layout, channel_axis) if config.task == "inpaint" else None
    if config.task == "inpaint" and msk is None:
        raise ValueError("inpainting needs a mask the size of the image (1 = known, 0 = to fill)")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None (automatic), got {batch_size!r}")
    if out is None:
        out_slices = (intensity.from_unit(intensity.to_unit(src)) if factor == 1
                      else np.zeros((layout.n_slices, layout.channels, *(s * factor for s in layout.spatial)),
                                    np.float32))
    else:
        if out.shape != layout.output_shape(factor):
            raise ValueError(f"out has shape {out.shape}, expected {layout.output_shape(factor)}")
        out_slices = as_slices(out, Layout(out.shape, layout.channel_axis))
    todo = list(range(layout.n_slices)) if slices is None else [int(i) for i in slices]
    bad = [i for i in todo if not 0 <= i < layout.n_slices]
    if bad:
        raise ValueError(f"slice indices {bad} are out of range 0..{layout.n_slices - 1}")
    dev = resolve_device(device)
    h, w = layout.spatial
    ph, pw = padded_size(config.network, h, w, factor)
    tile_size = config.extra.get("tile_size") if tile_size is None else tile_size
    max_memory = config.extra.get("max_memory") if max_memory is None else max_memory
    tiles, memory = tile_slices(config, src=src, gt=gt, mask=msk, intensity=intensity, spatial=(h, w),
                                padded=(ph, pw), device=dev, tile_size=tile_size, max_memory=max_memory,
                                n_slices=len(todo))
    fitted = (ph * factor, pw * factor) if tiles is None else tiles.grid_hr.tile
    if tiles is not None:
        # Tiles are fitted cold: a tile started from its neighbour's weights (other content)
        # fell far short of a cold fit in the same iterations (docs/speed.md, "Full size").
        warm_start = False
    units = [(i, t) for i in todo for t in range(1 if tiles is None else tiles.count)]
    size = batch_size or auto_batch_size(config, layout.channels, fitted, dev)
    if memory is not None and batch_size is None:
        size = min(size, memory.batch_size)
    size = max(1, min(size, len(units)))

    def settings_for(n: int) -> FitSettings:
        # 'auto' is resolved per fit, by its pixels: a warm start's first slice or a last,
        # smaller batch too small for bf16 to pay runs in fp32 (weights stay fp32 throughout).
        amp = resolve_precision(config.fit.precision, dev, pixels=n * fitted[0] * fitted[1])
        return replace(config.fit, precision="fp32" if amp is None else "bf16")

    records: list[dict] = []
    report = _report_header(config, dev, layout, intensity, fitted)
    report.update(batch_size=size, warm_start=bool(warm_start), precision=settings_for(size).precision,
                  parallel=parallel_groups(config.fit.parallel, dev, size))
    if tiles is not None:
        report["tiling"] = {**tiles.describe(len(todo)), "batch_size": size}
        if todo:
            log.info("tiling: %s", tiles.summary(len(todo), size))
        tile_records: dict[int, list[dict]] = {}
    start = time.perf_counter()
    cancelled = False
    torch = _torch()
    previous = None  # (network, problems) of the last fit, for warm starts
    target = None  # the data fit warm-started slices stop at: the first fit's
    for first, group in _groups(units, size, warm_start):
        n = len(group)
        batch = [i for i, _ in group]
        if tiles is None:
            obs = [intensity.to_unit(src[i]) for i in batch]
            obs_t = torch.from_numpy(np.stack([pad_reflect(o, ph, pw) for o in obs]))
            gt_t = None if gt is None else torch.from_numpy(np.stack(
                [pad_reflect(intensity.to_unit(gt[i]), ph * factor, pw * factor) for i in batch]))
            msk_t = None if msk is None else torch.from_numpy(np.stack([pad_reflect(msk[i], ph, pw) for i in batch]))
        else:
            obs_t, gt_t, msk_t = tiles.inputs(group)
        # A slice's noise model is estimated once, from the whole slice (its tiles share it).
        unique = {i: config.noise.model(src[i]) for i in dict.fromkeys(batch)} if config.noise.modelled else None
        models = [unique[i] for i in batch] if unique else None
        loss = config.noise.loss_for([m for m, _ in models], intensity.offset, intensity.scale) if models else None
        problem = build_problem(config, obs_t, seeds=[config.seed] * n, mask=msk_t, ground_truth=gt_t, loss=loss)
        if tiles is not None:
            problem.code = tiles.codes(group)
        warm = previous is not None
        if warm:
            copy_problem(previous[0], previous[1] - 1, previous[1], problem.network)
        rule = DataFitStop(n, target) if warm and config.stop != "oracle" else config.stop_rule(n)
        settings = settings_for(n)
        if warm and not settings.lr_ramp:
            settings = replace(settings, lr_ramp=WARM_LR_RAMP)
        gen = fit(problem, settings, rule, device=dev, cancel=cancel)
        clock = None if tiles is None else report["tiling"]
        result: FitResult = yield from _relay(gen, batch, first, len(units),
                                              None if tiles is None else tuple(t for _, t in group), clock)
        if warm_start and not result.cancelled:
            previous = (problem.network, n)
            if target is None and len(result.loss_curve):
                target = report["warm_target_loss"] = _data_fit(result, n - 1)
        report.setdefault("parameters", result.parameters)
        if tiles is not None:
            cancelled = result.cancelled
            yield from _blend_tiles(tiles, group, result, out_slices, tile_records, records, gt, intensity,
                                    config, settings, warm, len(todo), models)
            elapsed = time.perf_counter() - start
            done_units = first + n
            log.info("tiling: %d/%d tile(s) done in %.0f s, about %.0f s left", done_units, len(units), elapsed,
                     elapsed / done_units * (len(units) - done_units))
            if cancelled:
                break
            continue
        for g, index in enumerate(batch):
            restored = result.output[g, :, : h * factor, : w * factor]
            if models:
                restored = config.noise.finish(restored, models[g][0], intensity.offset, intensity.scale)
            truth = None if gt is None else intensity.to_unit(gt[index])
            record = _slice_record(index, g, result, restored, obs[g], truth, config)
            record.update(batch=n, warm_start=warm, precision=settings.precision, lr_ramp=settings.lr_ramp)
            if models:
                record.update(config.noise.record(*models[g]))
            if result.cancelled:
                cancelled = True
                record["partial"] = True
            out_slices[index] = intensity.from_unit(restored)
            records.append(record)
            yield SliceDone(index, first + g, len(todo), out_slices[index], record)
        if cancelled:
            break
    report["slices"] = records
    report["seconds"] = time.perf_counter() - start
    report["cancelled"] = cancelled
    report["partial"] = cancelled or len(records) < len(todo)
    output = out if out is not None else from_slices(out_slices, layout, factor)
    return output, report


def _groups(todo: list[int], size: int, warm_start: bool):
    """(position, slices) of each fit: batches of ``size``; with warm starts the first slice is
    fitted alone first, so that every later batch can start from weights fitted to the stack."""
    first = 1 if warm_start and size > 1 and len(todo) > 1 else 0
    if first:
        yield 0, todo[:1]
    for at in range(first, len(todo), size):
        yield at, todo[at:at + size]


def _data_fit(result: FitResult, g: int) -> float:
    """Problem ``g``'s smoothed loss at the iteration its rule chose: the warm slices' target."""
    chosen = max(1, min(int(result.stop_iterations[g]), len(result.loss_curve)))
    return float(smoothed_loss(result.loss_curve[:chosen, g:g + 1])[-1, 0])


def auto_batch_size(config: TaskConfig, channels: int, size: tuple[int, int], device) -> int:
    """How many slices to fit at once: as many as a quarter of the free device memory holds,
    and on the CPU no more than fill 2**17 pixels (beyond that, batches stop paying off) or
    one per torch thread (parallel groups, see :class:`~napari_dip.core.fit.FitSettings`)."""
    import psutil
    torch = _torch()
    make = lambda: config.network.build(channels, 1)  # noqa: E731
    need = problem_bytes(make, config.network.code_shape(*size))
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = psutil.virtual_memory().available
    fits = max(1, int(free // 4 // need))
    if device.type == "cpu":
        fits = min(fits, max(torch.get_num_threads(), 2 ** 17 // (size[0] * size[1])))
    return fits


def _relay(gen, batch: list[int], position: int, count: int, tiles: tuple[int, ...] | None = None,
           clock: dict | None = None):
    """Yield a fit's progress as SliceProgress events and return its result (for tiles, without
    previews: they are tile-sized). ``clock`` (a tiled run's report entry) gets the seconds per
    iteration of the run's first fit, measured over :data:`TIMED_ITERATIONS` iterations, and
    the estimate is logged."""
    began = time.perf_counter()
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if tiles is not None:
            event.preview = None
        if clock is not None and "seconds_per_iteration" not in clock and event.iteration == TIMED_ITERATIONS:
            per = clock["seconds_per_iteration"] = (time.perf_counter() - began) / TIMED_ITERATIONS
            batches = -(-clock["tiles_total"] // clock["batch_size"])
            log.info("tiling: %.2f s per iteration for a batch of %d tile(s) (first %d iterations); at most %d "
                     "iterations x %d batch(es): at most about %.0f s", per, len(tiles), TIMED_ITERATIONS,
                     event.total, batches, per * event.total * batches)
        yield SliceProgress(batch[0], position, count, event, tuple(batch), tiles or ())


def _blend_tiles(tiles, group, result: FitResult, out_slices, tile_records: dict, records: list, gt,
                 intensity: Intensity, config: TaskConfig, settings: FitSettings, warm: bool, count: int,
                 models=None):
    """Blend a fit's tiles into their slices; yield SliceDone for each slice whose tiles are all in
    (after a cancelled fit, for its slices too: partial, their unfitted tiles left at 0).

    A slice's record holds its tiles' records, the sum of their seconds, the most iterations
    and the metrics of the blended slice."""
    th, tw = tiles.grid_hr.tile
    finished = []
    for g, (index, t) in enumerate(group):
        restored = result.output[g, :, :th, :tw]
        if models:
            restored = config.noise.finish(restored, models[g][0], intensity.offset, intensity.scale)
        record = _slice_record(index, g, result, restored, tiles.observed(index, t), None, config)
        record.update(tile=t, batch=len(group), warm_start=warm, precision=settings.precision)
        tile_records.setdefault(index, []).append(record)
        if tiles.add(out_slices[index], index, t, restored):
            finished.append(index)
    if result.cancelled:
        finished += [i for i in dict.fromkeys(i for i, _ in group) if i not in finished]
    for index in finished:
        parts = tile_records.pop(index)
        losses = [p["final_loss"] for p in parts if p["final_loss"] is not None]
        record = {"slice": index, "tiles": parts, "seconds": round(sum(p["seconds"] for p in parts), 3),
                  "iterations": max(p["iterations"] for p in parts),
                  "fitted_iterations": int(sum(p["fitted_iterations"] for p in parts)),
                  "final_loss": float(np.mean(losses)) if losses else None,
                  "precision": settings.precision}
        if gt is not None:
            truth = intensity.to_unit(gt[index])
            record["psnr_input"], record["ssim_input"] = _metrics(
                _baseline(intensity.to_unit(tiles.src[index]), config), truth)
            record["psnr"], record["ssim"] = _metrics(np.clip(intensity.to_unit(out_slices[index]), 0, 1), truth)
        if result.cancelled:
            record["partial"] = True
        records.append(record)
        yield SliceDone(index, len(records) - 1, count, out_slices[index], record)


def _prepare_aux(arr, name: str, layout: Layout, channel_axis: int | None, factor: int) -> np.ndarray | None:
    if arr is None:
        return None
    arr = check_image(arr, name, channel_axis)
    if arr.shape != layout.output_shape(factor):
        raise ValueError(f"{name} has shape {arr.shape}; it must match the restored image, "
                         f"shape {layout.output_shape(factor)}")
    return as_slices(arr, Layout(arr.shape, layout.channel_axis))


def _prepare_mask(mask, layout: Layout, channel_axis: int | None) -> np.ndarray | None:
    """A (N, 1 or C, H, W) float mask from a (Y, X) mask or one the shape of the image."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype.kind not in "buif":
        raise ValueError(f"mask has unsupported dtype {m.dtype}; use a boolean or 0/1 array")
    h, w = layout.spatial
    if m.shape == (h, w):
        return np.broadcast_to((m > 0).astype(np.float32), (layout.n_slices, 1, h, w))
    if m.shape == layout.shape:
        return as_slices((m > 0).astype(np.float32), layout)
    raise ValueError(f"mask has shape {m.shape}; use the image's Y, X shape {(h, w)} or its full shape {layout.shape}")


def _report_header(config: TaskConfig, dev, layout: Layout, intensity: Intensity, fitted: tuple[int, int]) -> dict:
    torch = _torch()
    return {
        "task": config.task, "preset": config.preset, "stop": config.stop, "seed": config.seed,
        "factor": config.factor, "code": config.code, "architecture": config.architecture,
        "stopping": asdict(config.stopping),
        "network": {"type": type(config.network).__name__, **asdict(config.network)},
        "fit": asdict(config.fit), "device": str(dev), "torch": torch.__version__,
        "noise": config.noise.noise, "noise_params": config.noise.params,
        "noise_loss": config.noise.loss if config.noise.modelled else "mse",
        "napari_dip": __version__, "input_shape": list(layout.shape),
        "channel_axis": layout.channel_axis, "fitted_size": list(fitted),
        "intensity": {"offset": intensity.offset, "scale": intensity.scale},
    }


def _slice_record(index: int, g: int, result: FitResult, restored: np.ndarray, observed: np.ndarray,
                  truth: np.ndarray | None, config: TaskConfig) -> dict:
    """The record of problem ``g`` of a fit; ``seconds`` is its share of the batch's time."""
    n = len(result.stop_iterations)
    record = {
        "slice": index, "iterations": result.iterations, "seconds": round(result.seconds / n, 3),
        "final_loss": float(result.loss_curve[-1, g]) if len(result.loss_curve) else None,
        "stop_iteration": int(result.stop_iterations[g]), "restarts": result.restarts,
        "fitted_iterations": int(result.fitted_iterations[g]),
    }
    if truth is not None:
        base = _baseline(observed, config)
        record["psnr_input"], record["ssim_input"] = _metrics(base, truth)
        record["psnr"], record["ssim"] = _metrics(np.clip(restored, 0, 1), truth)
    return record


def _restore(task: str, image, *, factor: int = 1, mask=None, preset=None, iterations=None, lr=None,
             stop="auto", ground_truth=None, seed=0, device="auto", channel_axis=None, precision=None,
             network=None, code=None, architecture=None, stopping=None, return_report=False,
             callback=None, cancel=None, batch_size=None, warm_start=None, parallel=None,
             noise="gaussian", noise_params=None, tile_size=None, max_memory=None):
    config = make_config(task, preset=preset, factor=factor, iterations=iterations, lr=lr, stop=stop,
                         seed=seed, precision=precision, network=network, code=code,
                         architecture=architecture, stopping=stopping, parallel=parallel,
                         noise=noise, noise_params=noise_params)
    if config.stop == "oracle" and ground_truth is None:
        raise ValueError("stop='oracle' needs ground_truth (it is for evaluation only)")
    gen = run(config, image, channel_axis=channel_axis, mask=mask, ground_truth=ground_truth,
              device=device, cancel=cancel, batch_size=batch_size, warm_start=warm_start, tile_size=tile_size,
              max_memory=max_memory)
    output, report = drain(gen, callback)
    return (output, report) if return_report else output


_DOC_OPTIONS = """
    Options (keyword-only): ``preset`` ('fast' or 'paper'), ``iterations``, ``lr``, ``stop``
    ('auto', 'fixed' or 'oracle'; oracle needs ``ground_truth``), ``seed``, ``device`` ('auto',
    'cpu', 'cuda', 'cuda:N', 'mps'), ``channel_axis``, ``precision`` ('fp32', 'bf16', 'auto'),
    ``architecture`` ('skip', the DIP paper's network, or 'resunet', a residual U-Net with
    dropout), ``network`` (dict of the architecture's fields to change), ``stopping`` (dict of
    automatic-stopping settings: ``variant`` 'emv' or 'wmv', ``window``, ``patience``,
    ``min_iterations``, ``output``), ``code`` ('uniform', 'meshgrid'),
    ``return_report`` (also return the fitting report), ``callback`` (called with every
    progress event), ``cancel`` (a callable polled between iterations), ``batch_size``
    (slices fitted at once; default automatic), ``warm_start`` (start each batch of slices
    from the weights fitted to the slice before; default: on for denoising, off for the other
    tasks), ``parallel`` (groups of a batch fitted at the same time, one thread each; default:
    one per torch thread on the CPU), ``noise`` (denoising: 'gaussian', 'auto',
    'poisson-gaussian', 'poisson', 'rician'; see :mod:`napari_dip.core.noise_setup`),
    ``noise_params`` ((a, b) of variance = a * x + b in the input's units instead of an
    estimate per slice), ``max_memory`` (a memory budget, e.g. '4GB'; default: a
    safe share of the free memory) and ``tile_size`` (a tile side in output pixels): slices too
    large for the budget, or any with ``tile_size``, are fitted as overlapping tiles blended back
    without seams (see :func:`run`).

    Returns float32 in the input's intensity units; nD stacks are processed slice by slice
    over the axes before Y, X (and the channel axis).
"""


def denoise(image, **options):
    """Denoise an image with Deep Image Prior (A = identity)."""
    return _restore("denoise", image, **options)


def super_resolve(image, factor: int, **options):
    """Super-resolve an image by an integer ``factor`` (2..32) with a Lanczos2 downsampling model."""
    return _restore("superres", image, factor=factor, **options)


def inpaint(image, mask, **options):
    """Fill the pixels where ``mask`` is 0 (mask: the image's Y, X shape or its full shape)."""
    return _restore("inpaint", image, mask=mask, **options)


for _f in (denoise, super_resolve, inpaint):
    _f.__doc__ += _DOC_OPTIONS
