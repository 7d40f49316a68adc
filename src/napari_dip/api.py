"""Public functions on NumPy arrays: denoise, super_resolve, inpaint, deconvolve, restore, and the
generator behind them.

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
from .arrays import (MIN_SIDE, Intensity, Layout, as_slices, check_image, from_slices, layout_of, pad_reflect,
                     padded_size)
from .core import checks
from .core.fit import (FitResult, FitSettings, Progress, drain, fit, parallel_groups, problem_bytes,
                       resolve_device, resolve_precision)
from .core.nets.factory import copy_problem
from .core.stopping import DataFitStop, smoothed_loss
from .core.losses import make_loss
from .core.task import TaskConfig, build_problem, check_inputs, make_config, make_operator
from .tiled import operator_halo, tile_slices

__all__ = ["denoise", "super_resolve", "inpaint", "deconvolve", "restore", "run", "make_config", "Options",
           "SliceProgress", "SliceDone"]

log = logging.getLogger("napari_dip")
# The noise entries of a record that a tiled slice takes from its tiles (they share its model).
SLICE_NOISE_ENTRIES = ("noise", "noise_source", "noise_levels", "stop_rule", "loss")
TIMED_ITERATIONS = 5  # a tiled run's time per iteration is measured over its first fit's first iterations
WARM_LR_RAMP = 25
"""Iterations over which a warm-started fit's learning rate rises to the configured one. With
fresh Adam at the full rate, warm slices needed 1.5-1.8x as many iterations to reach the first
slice's data fit, at the same PSNR (docs/speed.md, "Warm starts")."""


@dataclass
class SliceProgress:
    """Progress within slice number ``slice`` (the ``position``-th of ``count`` to do).

    Problems fitted together in one batch share one event per iteration: ``slice`` and
    ``position`` are the batch's first, ``slices`` gives each problem's slice (a slice cut
    into tiles or parts has several problems), and the lists in ``progress`` hold one entry
    per problem. ``progress.preview``, when there is one, holds one image (C, H, W) per
    distinct slice of ``slices``, in their order, restored size, in the input's units.
    """

    slice: int
    position: int
    count: int
    progress: Progress
    slices: tuple[int, ...] = ()
    tiles: tuple[int, ...] = ()
    eta: float | None = None  # a tiled run's seconds left (at most: iterations at their cap)


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


def run(config: TaskConfig, image, *, channel_axis: int | None = None, inputs: dict | None = None,
        mask=None, ground_truth=None, shape: tuple[int, int] | None = None,
        device: str = "auto", slices: Sequence[int] | None = None, out: np.ndarray | None = None,
        cancel: Callable[[], bool] | None = None, batch_size: int | None = None,
        warm_start: bool | None = None, loss=None, tile_size: int | None = None, max_memory=None,
        tile_store=None, parts=None) -> Generator[SliceProgress | SliceDone, None, tuple[np.ndarray, dict]]:
    """Restore ``image`` slice by slice; yield progress and finished slices; return (output, report).

    ``image`` is the observation. ``inputs`` are the task's operator inputs as data (see
    :class:`~napari_dip.core.task.TaskSpec`): image-shaped ones (the inpainting ``mask``) have
    the image's Y, X shape or its full shape and follow the slices; the others (a ``psf``,
    a user's ``operator``) are shared by every slice; ``mask`` is short for
    ``inputs={"mask": mask}``. ``shape`` is the restored (Y, X) size for tasks that crop
    (a user's operator whose observation is smaller or larger than the image; default: the
    observation's). ``loss`` is the data fidelity: a name registered in
    :data:`~napari_dip.core.losses.LOSSES` or a loss object (default: mean squared error); a
    loss holding one row of parameters per slice of the image (``per_problem``) is
    row-selected for each batch by slice number.

    ``slices`` selects flat slice indices over the non-spatial axes (default: all). The output
    has the input's shape with Y and X multiplied by the factor (or set to ``shape``), float32
    in the input's intensity units; slices not processed are copied from ``out`` if given,
    otherwise from the input (when the sizes agree) or left at 0. The input is never modified.
    ``out`` (e.g. a memory map of a file) receives every slice as it finishes, and the run
    then holds nothing of the output's size: one batch of slices (or one slice's tile blend).

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
    (unless ``config.fit.lr_ramp`` sets a ramp). When the first slice's automatic rule does not
    stop before the iteration cap (full-size slices), its data fit is no stopping point and the
    later slices are fitted cold (``report['warm_start_off']`` says so).

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
    ``tile_store`` (``get(slice, tile)`` -> (tile, record) or None, ``put(slice, tile, tile,
    record)``; tiles in unit intensities) keeps finished tiles across runs: a batch of tiles
    all kept is blended from it instead of fitted (batches are the same in every run with the
    same settings, so a resumed slice is the one a run without a stop gives).

    ``parts`` expands every slice into problems of the caller's making instead (no tiling, no
    warm start; the Deep Decoder's ensemble members x patches,
    :class:`napari_dip.decoder.DecoderParts`): called like :func:`~napari_dip.tiled.tile_slices`
    with the run's slices, it returns an object with TiledSlices' interface (``count``,
    ``fitted``, ``seeds``, ``inputs``, ``codes``, ``observed``, ``add``, ``src``) and a
    ``preview(problems, preview)`` giving the slices' previews in the input's units (or None).
    """
    inputs = {**dict(config.inputs), **(inputs or {})}
    if mask is not None:
        inputs["mask"] = mask
    image = check_image(_honour_masked(image, inputs, config), "image", channel_axis)
    spec = config.spec
    warm_start = config.warm_start if warm_start is None else bool(warm_start)
    layout = layout_of(image, channel_axis)
    intensity = Intensity.of(image)
    factor = config.factor
    h, w = layout.spatial
    size = _restored_size(spec, shape, (h, w), factor)
    src = as_slices(image, layout)
    gt = _prepare_aux(ground_truth, "ground_truth", layout, channel_axis, size)
    check_inputs(config, inputs)
    fidelity = make_loss(loss) if isinstance(loss, str) else loss
    per_slice = {k: _prepare_mask(v, layout, k) for k, v in inputs.items() if k in spec.slice_inputs}
    shared = {k: v for k, v in inputs.items() if k not in spec.slice_inputs}
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None (automatic), got {batch_size!r}")
    if out is None:  # the input as the fit sees it (slices not processed), one slice at a time
        out_slices = np.zeros((layout.n_slices, layout.channels, *size), np.float32)
        for i in range(layout.n_slices if size == (h, w) else 0):
            out_slices[i] = intensity.from_unit(intensity.to_unit(src[i]))
    else:
        if out.shape != layout.output_shape(size=size):
            raise ValueError(f"out has shape {out.shape}, expected {layout.output_shape(size=size)}")
        out_slices = as_slices(out, Layout(out.shape, layout.channel_axis))
        if out_slices.size and not np.may_share_memory(out_slices, out):  # results would go to a copy
            raise ValueError("out cannot be written slice by slice in place (its axes cannot be merged without "
                             "a copy); pass a C-contiguous array, e.g. np.lib.format.open_memmap(...)")
    todo = list(range(layout.n_slices)) if slices is None else [int(i) for i in slices]
    bad = [i for i in todo if not 0 <= i < layout.n_slices]
    if bad:
        raise ValueError(f"slice indices {bad} are out of range 0..{layout.n_slices - 1}")
    dev = resolve_device(device)
    msk = per_slice.get("mask")
    tile_size = config.extra.get("tile_size") if tile_size is None else tile_size
    max_memory = config.extra.get("max_memory") if max_memory is None else max_memory
    if spec.crop:  # the observation as it is; the network's output cropped to the image
        ph, pw = h, w
        fitted = config.network.padded_size(*size)
        operator = _check_operator(config, shared, layout.channels, size, (h, w))
        halo, planned = operator_halo(operator, size, (h, w)), fitted
    else:  # the observation padded by reflection to what the network's size maps to
        ph, pw = padded_size(config.network, h, w, factor)
        fitted = planned = (ph * factor, pw * factor)
        halo = 0
    tiles = memory = None
    if parts is None:
        tiles, memory = tile_slices(config, src=src, gt=gt, mask=msk, intensity=intensity, spatial=(h, w),
                                    padded=(planned[0] // factor, planned[1] // factor), device=dev,
                                    tile_size=tile_size, max_memory=max_memory, halo=halo)
    # The problems of a slice, when it has several: its tiles, or the caller's parts.
    expansion = tiles if parts is None else parts(config, src=src, gt=gt, mask=msk, intensity=intensity,
                                                  spatial=(h, w))
    if expansion is not None:
        fitted = expansion.fitted
        # Tiles and parts are fitted cold: a tile started from its neighbour's weights (other
        # content) fell far short of a cold fit in the same iterations (docs/speed.md, "Full size").
        warm_start = False
    units = [(i, t) for i in todo for t in range(1 if expansion is None else expansion.count)]
    batch = batch_size or auto_batch_size(config, layout.channels, fitted, dev)
    if memory is not None and batch_size is None:
        batch = min(batch, memory.batch_size)
    batch = max(1, min(batch, len(units)))

    def settings_for(n: int) -> FitSettings:
        # 'auto' is resolved per fit, by its code's pixels as fit() counts them: a warm start's
        # first slice or a last, smaller batch too small for bf16 to pay runs in fp32 (weights
        # stay fp32 throughout).
        code = config.network.code_shape(*fitted)
        amp = resolve_precision(config.fit.precision, dev, pixels=n * code[1] * code[2])
        return replace(config.fit, precision="fp32" if amp is None else "bf16")

    records: list[dict] = []
    report = _report_header(config, dev, layout, intensity, fitted)
    report.update(batch_size=batch, warm_start=bool(warm_start), precision=settings_for(batch).precision,
                  parallel=parallel_groups(config.fit.parallel, dev, batch))
    if tiles is not None:
        report["tiling"] = {**tiles.describe(len(todo)), "batch_size": batch}
        if todo:
            log.info("tiling: %s", tiles.summary(len(todo), batch))
    tile_records: dict[int, list[dict]] = {}  # the finished problems of slices cut into several
    # Runs cut into tiles (the api's, or a decoder's) count down over all their tiles.
    eta = _TileClock(len(units)) if getattr(expansion, "tiled", False) else None
    start = time.perf_counter()
    cancelled = False
    torch = _torch()
    previous = None  # (network, problems) of the last fit, for warm starts
    target = None  # the data fit warm-started slices stop at: the first fit's
    for first, group in _groups(units, batch, warm_start):
        n = len(group)
        members = [i for i, _ in group]  # the slice of each problem
        kept = [tile_store.get(i, t) for i, t in group] if tiles is not None and tile_store is not None else []
        if kept and all(k is not None for k in kept):  # fitted by an earlier run with the same settings
            yield from _blend_tiles(tiles, group, kept, False, out_slices, tile_records, records, gt, intensity,
                                    config, len(todo))
            continue
        if expansion is None:
            obs = [intensity.to_unit(src[i]) for i in members]
            obs_t = torch.from_numpy(np.stack([pad_reflect(o, ph, pw) for o in obs]))
            gt_t = None if gt is None else torch.from_numpy(np.stack(
                [pad_reflect(intensity.to_unit(gt[i]), *fitted) for i in members]))
            batch_inputs = {**shared, **{k: torch.from_numpy(np.stack([pad_reflect(v[i], ph, pw) for i in members]))
                                         for k, v in per_slice.items()}}
        else:
            obs_t, gt_t, msk_t = expansion.inputs(group)
            batch_inputs = {**shared, **({} if msk_t is None else {"mask": msk_t})}
        # A slice's noise model is estimated once, from the whole slice (its tiles share it).
        unique = {i: config.noise.model(src[i]) for i in dict.fromkeys(members)} if config.noise.modelled else None
        models = [unique[i] for i in members] if unique else None
        fidelity_now = (config.noise.loss_for([m for m, _ in models], intensity.offset, intensity.scale)
                        if models else _loss_rows(fidelity, members, layout.n_slices))
        seeds = [config.seed] * n if expansion is None else expansion.seeds(group)
        problem = build_problem(config, obs_t, seeds=seeds, inputs=batch_inputs, ground_truth=gt_t,
                                size=size if expansion is None else fitted, loss=fidelity_now)
        if expansion is not None:  # each problem its own code (a tile's piece of one, a member's patch)
            problem.code, problem.shared_code = expansion.codes(group), False
        report.setdefault("loss", getattr(problem.loss, "name", type(problem.loss).__name__))
        warm = previous is not None
        if warm:
            copy_problem(previous[0], previous[1] - 1, previous[1], problem.network)
        rule = DataFitStop(n, target) if warm and config.stop != "oracle" else None
        if rule is None and models and config.stop == "auto":  # a known noise model: its discrepancy stop
            rule = config.noise.stop_rule([m for m, _ in models], obs_t, intensity.offset, intensity.scale,
                                          config.stopping)
        if rule is None:
            rule = config.stop_rule(n)
        settings = settings_for(n)
        if models and config.noise.keeps_code_noise([m for m, _ in models]):
            settings = replace(settings, code_noise_side=0)
        if warm and not settings.lr_ramp:
            settings = replace(settings, lr_ramp=WARM_LR_RAMP)
        gen = fit(problem, settings, rule, device=dev, cancel=cancel)
        clock = None if tiles is None else report["tiling"]
        began = time.perf_counter()
        if expansion is None:
            previews = _user_previews(members, intensity, size, config, models)
        else:  # the parts' previews; none for tiles (tile-sized)
            previews = None if tiles is not None else (lambda p, group=group: expansion.preview(group, p))
        result: FitResult = yield from _relay(gen, members, first, len(units), previews,
                                              None if eta is None else tuple(t for _, t in group), clock, eta)
        if warm_start and not result.cancelled and target is None and _ran_to_the_cap(config, result, n - 1):
            # The first fit's automatic rule found no stop before the cap (full-size slices): its
            # data fit is no optimum, and neighbours stopped there end worse than cold fits
            # (docs/speed.md, "On a CPU with bf16 hardware again"); the other slices fit cold.
            warm_start = report["warm_start"] = False
            report["warm_start_off"] = WARM_OFF_AT_CAP
            log.info("warm start off: %s", WARM_OFF_AT_CAP)
        if warm_start and not result.cancelled:
            previous = (problem.network, n)
            if target is None and len(result.loss_curve):
                target = report["warm_target_loss"] = _data_fit(result, n - 1)
        report.setdefault("parameters", result.parameters)
        if expansion is not None:
            cancelled = result.cancelled
            outputs = _tile_outputs(expansion, group, result, config, intensity, settings, warm, models,
                                    _noise_entries(rule, fidelity_now, config))
            if tile_store is not None and tiles is not None and not cancelled:
                for (index, t), (restored, record) in zip(group, outputs):
                    tile_store.put(index, t, restored, record)
            yield from _blend_tiles(expansion, group, outputs, cancelled, out_slices, tile_records, records, gt,
                                    intensity, config, len(todo))
            if eta is not None:
                eta.finish(n, time.perf_counter() - began)
                log.info("tiling: %d/%d tile(s) done in %.0f s, about %.0f s left", first + n, len(units),
                         time.perf_counter() - start, eta.left(first + n))
            if cancelled:
                break
            continue
        for g, index in enumerate(members):
            restored = result.output[g, :, : size[0], : size[1]]
            if models:
                restored = config.noise.finish(restored, models[g][0], intensity.offset, intensity.scale)
            truth = None if gt is None else intensity.to_unit(gt[index])
            record = _slice_record(index, g, result, restored, obs[g], truth, config)
            record.update(batch=n, warm_start=warm, precision=settings.precision, lr_ramp=settings.lr_ramp)
            if models:
                record.update(config.noise.record(*models[g]), **_noise_entries(rule, fidelity_now, config))
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
    output = out if out is not None else from_slices(out_slices, layout)
    return output, report


def _loss_rows(loss, group: list[int], n_slices: int):
    """The loss of the slices ``group``: its rows when it holds parameters per slice."""
    if loss is None or not getattr(loss, "per_problem", ()):
        return loss
    rows = {getattr(loss, k).shape[0] for k in loss.per_problem} - {1}
    if rows - {n_slices}:
        raise ValueError(f"the loss holds {sorted(rows)} rows of parameters; the image has {n_slices} slices")
    return loss.rows(_torch().tensor(group))


def _restored_size(spec, shape, observed: tuple[int, int], factor: int) -> tuple[int, int]:
    """The (H, W) of a restored slice: ``shape`` for tasks that crop, else factor x observed."""
    if shape is None:
        return (observed[0] * factor, observed[1] * factor) if not spec.crop else tuple(observed)
    if not spec.crop:
        raise ValueError(f"shape is only for restore with a user operator, not for {spec.title}")
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= MIN_SIDE for s in shape)):
        raise ValueError(f"shape must be the restored image's (Y, X) size, two integers >= {MIN_SIDE}, "
                         f"got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_operator(config: TaskConfig, shared: dict, channels: int, size: tuple[int, int],
                    observed: tuple[int, int]):
    """Apply a cropping task's operator to a blank image once: it must give the observation's
    shape (a clear error before any fitting otherwise). Returns the operator."""
    torch = _torch()
    op = make_operator(config, **shared)
    want = (1, channels, *observed)
    try:
        with torch.no_grad():
            got = op(torch.zeros(1, channels, *size))
    except Exception as err:  # a user's operator: say which call failed
        raise ValueError(f"the operator failed on a (1, {channels}, {size[0]}, {size[1]}) image: {err}") from err
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != want:
        got_shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise ValueError(f"the operator maps a (1, {channels}, {size[0]}, {size[1]}) image to {got_shape}, "
                         f"but the observation is {want}; pass shape= the image size it takes")
    return op


def _groups(todo: list[int], size: int, warm_start: bool):
    """(position, slices) of each fit: batches of ``size``; with warm starts the first slice is
    fitted alone first, so that every later batch can start from weights fitted to the stack."""
    first = 1 if warm_start and size > 1 and len(todo) > 1 else 0
    if first:
        yield 0, todo[:1]
    for at in range(first, len(todo), size):
        yield at, todo[at:at + size]


WARM_OFF_AT_CAP = ("the first slice's automatic rule did not stop before the iteration cap, so its data fit "
                   "is no stopping point for its neighbours: the other slices are fitted cold")


def _ran_to_the_cap(config: TaskConfig, result: FitResult, g: int) -> bool:
    """True when problem ``g``'s automatic rule never declared it done: it was fitted to the cap."""
    return config.stop == "auto" and int(result.fitted_iterations[g]) >= result.iterations >= config.fit.iterations


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


class _TileClock:
    """The seconds a tiled run has left: the time per tile and iteration fitted so far times the
    tile iterations to go (at their cap: tiles that stop early make it shorter)."""

    def __init__(self, units: int):
        self.units, self.done, self.seconds = units, 0.0, 0.0

    def left(self, at: float, running: int = 0, fraction: float = 0.0, seconds: float = 0.0) -> float | None:
        """After ``at`` units, with ``running`` more ``fraction`` done for ``seconds``."""
        work = self.done + running * fraction
        return None if work <= 0 else (self.seconds + seconds) / work * (self.units - at - running * fraction)

    def finish(self, n: int, seconds: float) -> None:
        self.done += n
        self.seconds += seconds


def _user_previews(members: list[int], intensity: Intensity, size: tuple[int, int], config: TaskConfig, models):
    """The previews of whole slices fitted one per problem: cropped to the restored size, in
    the input's units (with a noise model's final correction)."""
    def previews(p: np.ndarray) -> np.ndarray:
        out = []
        for g in range(len(members)):
            x = p[g, :, : size[0], : size[1]]
            if models:
                x = config.noise.finish(x, models[g][0], intensity.offset, intensity.scale)
            out.append(intensity.from_unit(x))
        return np.stack(out).astype(np.float32, copy=False)
    return previews


def _relay(gen, batch: list[int], position: int, count: int, previews: Callable | None,
           tiles: tuple[int, ...] | None = None, clock: dict | None = None, eta: _TileClock | None = None):
    """Yield a fit's progress as SliceProgress events and return its result; ``previews`` turns
    a fit's preview into the slices' (None: previews are left out, as for tiles: they are
    tile-sized; a tiled run's events carry the seconds left from ``eta``). ``clock`` (a tiled
    run's report entry) gets the seconds per iteration of the run's first fit, measured over
    :data:`TIMED_ITERATIONS` iterations, and the estimate is logged."""
    began = time.perf_counter()
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if event.preview is not None:
            event.preview = None if previews is None else previews(event.preview)
        if clock is not None and "seconds_per_iteration" not in clock and event.iteration == TIMED_ITERATIONS:
            per = clock["seconds_per_iteration"] = (time.perf_counter() - began) / TIMED_ITERATIONS
            batches = -(-clock["tiles_total"] // clock["batch_size"])
            log.info("tiling: %.2f s per iteration for a batch of %d tile(s) (first %d iterations); at most %d "
                     "iterations x %d batch(es): at most about %.0f s", per, len(tiles), TIMED_ITERATIONS,
                     event.total, batches, per * event.total * batches)
        left = None if eta is None else eta.left(position, len(batch), event.iteration / event.total,
                                                  time.perf_counter() - began)
        yield SliceProgress(batch[0], position, count, event, tuple(batch), tiles or (), left)


def _noise_entries(rule, fidelity, config: TaskConfig) -> dict:
    """A noise-modelled fit's report entries beside its model: the stopping rule and the loss."""
    return {"stop_rule": getattr(rule, "name", config.stop),
            "loss": config.noise.loss if fidelity is not None else "mse"}


def _tile_outputs(tiles, group, result: FitResult, config: TaskConfig, intensity: Intensity,
                  settings: FitSettings, warm: bool, models=None,
                  noted: dict | None = None) -> list[tuple[np.ndarray, dict]]:
    """(restored tile in unit intensities, its record) of each problem of a fit of tiles;
    ``noted``: the noise entries of a modelled fit (:func:`_noise_entries`)."""
    th, tw = tiles.fitted
    outputs = []
    for g, (index, t) in enumerate(group):
        restored = result.output[g, :, :th, :tw]
        if models:
            restored = config.noise.finish(restored, models[g][0], intensity.offset, intensity.scale)
        record = _slice_record(index, g, result, restored, tiles.observed(index, t), None, config)
        record.update(tile=t, batch=len(group), warm_start=warm, precision=settings.precision)
        if models:
            record.update(config.noise.record(*models[g]), **noted)
        outputs.append((restored, record))
    return outputs


def _blend_tiles(tiles, group, outputs: list[tuple[np.ndarray, dict]], cancelled: bool, out_slices,
                 tile_records: dict, records: list, gt, intensity: Intensity, config: TaskConfig, count: int):
    """Blend tiles (:func:`_tile_outputs`, or kept from an earlier run) into their slices; yield
    SliceDone for each slice whose tiles are all in (after a cancelled fit, for its slices too:
    partial, their unfitted tiles left at 0).

    A slice's record holds its tiles' records, the sum of their seconds, the most iterations
    and the metrics of the blended slice."""
    finished = []
    for (index, t), (restored, record) in zip(group, outputs):
        tile_records.setdefault(index, []).append(record)
        if tiles.add(out_slices[index], index, t, restored):
            finished.append(index)
    if cancelled:
        finished += [i for i in dict.fromkeys(i for i, _ in group) if i not in finished]
    for index in finished:
        parts = tile_records.pop(index)
        losses = [p["final_loss"] for p in parts if p["final_loss"] is not None]
        record = {"slice": index, "tiles": parts, "seconds": round(sum(p["seconds"] for p in parts), 3),
                  "iterations": max(p["iterations"] for p in parts),
                  "fitted_iterations": int(sum(p["fitted_iterations"] for p in parts)),
                  "final_loss": float(np.mean(losses)) if losses else None,
                  "precision": parts[-1]["precision"], "code_noise": parts[-1].get("code_noise")}
        record.update({k: parts[0][k] for k in SLICE_NOISE_ENTRIES if k in parts[0]})
        if gt is not None:
            truth = intensity.to_unit(gt[index])
            record["psnr_input"], record["ssim_input"] = _metrics(
                _baseline(intensity.to_unit(tiles.src[index]), config), truth)
            record["psnr"], record["ssim"] = _metrics(np.clip(intensity.to_unit(out_slices[index]), 0, 1), truth)
        if cancelled:
            record["partial"] = True
        records.append(record)
        yield SliceDone(index, len(records) - 1, count, out_slices[index], record)


def _prepare_aux(arr, name: str, layout: Layout, channel_axis: int | None,
                 size: tuple[int, int]) -> np.ndarray | None:
    if arr is None:
        return None
    arr = check_image(arr, name, channel_axis)
    if arr.shape != layout.output_shape(size=size):
        raise ValueError(f"{name} has shape {arr.shape}; it must match the restored image, "
                         f"shape {layout.output_shape(size=size)}")
    return as_slices(arr, Layout(arr.shape, layout.channel_axis))


def _prepare_mask(mask, layout: Layout, name: str = "mask") -> np.ndarray:
    """A (N, 1 or C, H, W) float mask from a (Y, X) mask or one the shape of the image;
    refused (one line naming the problem) when it cannot be a mask."""
    if isinstance(mask, np.ma.MaskedArray):
        raise ValueError(f"{name} is a NumPy masked array; pass a plain boolean array (1 = known pixel)")
    m = np.asarray(mask)
    if m.dtype.kind not in "buif":
        raise ValueError(f"{name} has unsupported dtype {m.dtype}; use a boolean or 0/1 array")
    h, w = layout.spatial
    if m.shape not in ((h, w), layout.shape):
        raise ValueError(f"{name} has shape {m.shape}; use the image's Y, X shape {(h, w)} or its full shape "
                         f"{layout.shape}")
    if m.dtype.kind == "f" and not np.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or infinite values; use a boolean or 0/1 array")
    known = (m > 0).astype(np.float32)
    slices = (np.broadcast_to(known, (layout.n_slices, 1, h, w)) if m.shape == (h, w)
              else as_slices(known, layout))
    empty = [i for i in range(layout.n_slices) if not slices[i].any()]
    if empty:
        where = "" if m.shape == (h, w) else f" in slice(s) {empty[:5]}"
        raise ValueError(f"{name} marks no pixel as known{where} (all 0); 1 = known pixel, 0 = to fill")
    return slices


def _honour_masked(image, inputs: dict, config: TaskConfig):
    """A NumPy masked array's mask (True = invalid) is the pixels to fill when inpainting,
    combined with a given mask; other tasks refuse it rather than fit the masked values."""
    if not isinstance(image, np.ma.MaskedArray):
        return image
    if config.task != "inpaint":
        raise ValueError(f"image is a NumPy masked array, which {config.spec.title} would ignore; pass "
                         "image.filled(value) or a plain array, or inpaint the masked pixels")
    invalid = np.ma.getmaskarray(image)
    known = ~invalid
    if inputs.get("mask") is not None:
        given = np.asarray(inputs["mask"])
        if given.shape != invalid.shape and given.shape == invalid.shape[-2:] and invalid.ndim > 2:
            given = np.broadcast_to(given, invalid.shape)
        if given.shape != invalid.shape:
            raise ValueError(f"mask has shape {given.shape} but the masked image is {invalid.shape}")
        known = known & (given > 0)
    inputs["mask"] = known
    return np.ma.getdata(image)


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
        "fitted_iterations": int(result.fitted_iterations[g]), "code_noise": result.code_noise,
    }
    if truth is not None:
        base = _baseline(observed, config)
        record["psnr_input"], record["ssim_input"] = _metrics(base, truth)
        record["psnr"], record["ssim"] = _metrics(np.clip(restored, 0, 1), truth)
    return record


@dataclass(frozen=True)
class Options:
    """The settings every restoring function takes, validated once (see :func:`denoise` for
    what each means); :meth:`config` resolves them with a task's preset."""

    preset: str | None = None
    iterations: int | None = None
    lr: float | None = None
    stop: str = "auto"
    seed: int = 0
    device: str = "auto"
    channel_axis: int | None = None
    precision: str | None = None
    architecture: str | None = None
    network: dict | None = None
    stopping: dict | None = None
    code: str | None = None
    batch_size: int | None = None
    warm_start: bool | None = None
    parallel: int | None = None
    loss: object = None  # a registered loss name or a loss object
    noise: str = "gaussian"  # denoising's noise model (core/noise_setup.py)
    noise_params: tuple | None = None
    tile_size: int | None = None  # a tile side in output pixels (see run)
    max_memory: object = None  # bytes or a string like '4GB' (see run)

    @classmethod
    def of(cls, values: dict) -> "Options":
        """The options among a function's arguments (``locals()``), validated."""
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values}).validate()

    def validate(self) -> "Options":
        checks.whole("iterations", self.iterations, 1, none=True)
        checks.number("lr", self.lr, none=True)
        checks.whole("seed", self.seed, 0)
        checks.whole("channel_axis", self.channel_axis, none=True)
        checks.whole("batch_size", self.batch_size, 1, none=True)
        checks.whole("parallel", self.parallel, 0, none=True)
        checks.whole("tile_size", self.tile_size, 1, none=True)
        for name in ("preset", "stop", "precision", "architecture", "code"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {value!r} ({type(value).__name__})")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string ('auto', 'cpu', 'cuda', 'cuda:N', 'mps'), got {self.device!r}")
        if self.network is not None and not isinstance(self.network, dict) and not hasattr(self.network, "build"):
            raise TypeError(f"network must be a dict of settings to change or a network config, got {self.network!r}")
        if self.stopping is not None and not isinstance(self.stopping, dict):
            raise TypeError(f"stopping must be a dict of settings to change, got {self.stopping!r}")
        if self.loss is not None and not isinstance(self.loss, str) and not callable(self.loss):
            raise TypeError(f"loss must be a registered loss name or a loss object, got {self.loss!r}")
        if self.loss is not None and (self.noise not in ("gaussian", "auto") or self.noise_params is not None):
            raise ValueError(f"loss and noise={self.noise!r}{' with noise_params' if self.noise_params else ''} "
                             "both set the data fidelity; give one of them")
        if self.warm_start is not None and not isinstance(self.warm_start, bool):
            raise TypeError(f"warm_start must be True, False or None, got {self.warm_start!r}")
        return self

    def config(self, task: str, factor: int = 1) -> TaskConfig:
        return make_config(task, preset=self.preset, factor=factor, iterations=self.iterations, lr=self.lr,
                           stop=self.stop, seed=self.seed, precision=self.precision, network=self.network,
                           code=self.code, architecture=self.architecture, stopping=self.stopping,
                           parallel=self.parallel, noise_params=self.noise_params,
                           noise="gaussian" if self.loss is not None else self.noise)  # a given loss: as is


def _restore(task: str, image, options: Options, *, factor: int = 1, inputs: dict | None = None,
             shape=None, ground_truth=None, return_report=False, callback=None, cancel=None):
    """Run ``task`` on ``image`` with ``options`` through :func:`run`: the output, and the
    report with ``return_report``."""
    config = options.config(task, factor)
    if config.stop == "oracle" and ground_truth is None:
        raise ValueError("stop='oracle' needs ground_truth (it is for evaluation only)")
    gen = run(config, image, channel_axis=options.channel_axis, inputs=inputs, ground_truth=ground_truth,
              shape=shape, device=options.device, cancel=cancel, batch_size=options.batch_size,
              warm_start=options.warm_start, loss=options.loss, tile_size=options.tile_size,
              max_memory=options.max_memory)
    output, report = drain(gen, callback)
    return (output, report) if return_report else output


OPTIONS_DOC = """\
preset : {'fast', 'paper'}, optional
    Settings of the task (default: 'fast').
iterations : int, optional
    Iterations per fit (default: the preset's); the automatic rule may stop earlier.
lr : float, optional
    Adam's learning rate (default: the preset's, 0.01).
stop : {'auto', 'fixed', 'oracle'}
    When to stop: the automatic rule (no ground truth needed), after ``iterations``, or
    at the best PSNR against ``ground_truth`` (for evaluation only).
seed : int
    Seeds the networks, codes and noise (>= 0).
device : str
    'auto' (CUDA, then MPS, then the CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'.
channel_axis : int, optional
    The axis holding colour channels, if any.
precision : {'auto', 'fp32', 'bf16'}, optional
    Arithmetic of the forward pass (weights stay fp32).
architecture : {'skip', 'resunet'}, optional
    The DIP paper's skip network, or a residual U-Net with dropout.
network : dict, optional
    Fields of the architecture's config to change (e.g. ``{'activation': 'ReLU'}``).
stopping : dict, optional
    Settings of the automatic rule to change: ``variant`` ('emv', 'wmv'), ``window``,
    ``patience``, ``min_iterations``, ``output``.
code : {'uniform', 'meshgrid'}, optional
    The network's fixed input.
batch_size : int, optional
    Slices fitted at once (default: automatic, from the free memory).
warm_start : bool, optional
    Start each batch of slices from the weights fitted to the slice before (default: on
    for denoising, off for the other tasks).
parallel : int, optional
    Groups of a batch fitted at the same time, one thread each (default: one per torch
    thread on the CPU).
loss : str or loss object, optional
    The data fidelity: a name in :data:`napari_dip.core.losses.LOSSES` or an object of the
    loss protocol (default: 'mse', for Gaussian noise).
tile_size : int, optional
    Fit every slice as overlapping tiles of this side (output pixels), blended back with a
    cosine window (for deconvolution overlapping by more than twice the PSF's radius).
max_memory : int or str, optional
    A memory budget in bytes or as '4GB' (default: a safe share of the free RAM or GPU
    memory); slices too large for it are fitted as tiles.
return_report : bool
    Also return the report (settings, per-slice iterations, metrics, timings).
callback : callable, optional
    Called with every progress event (:class:`SliceProgress`, :class:`SliceDone`).
cancel : callable, optional
    Polled between iterations; when it returns True the run stops and returns what is done.
"""
"""The numpydoc entries of the options the restoring functions share, each defined once."""


def _option_entries() -> dict[str, str]:
    """:data:`OPTIONS_DOC` split into its entries, by option name."""
    entries: dict[str, list[str]] = {}
    for line in OPTIONS_DOC.splitlines():
        if not line.startswith(" "):
            entries[line.split(" : ")[0]] = []
        entries[next(reversed(entries))].append(line)
    return {name: "\n".join(lines) for name, lines in entries.items()}


def shared_options(func):
    """Replace ``{options}`` in ``func``'s docstring with the entries of :data:`OPTIONS_DOC`
    for the options it takes, in its signature's order: one definition, complete ``help``."""
    import inspect
    if func.__doc__ is None:  # docstrings stripped (python -OO)
        return func
    entries = _option_entries()
    names = [name for name in inspect.signature(func).parameters if name in entries]
    text = "\n".join(entries[name] for name in names).replace("\n", "\n    ")
    func.__doc__ = func.__doc__.replace("{options}", text)
    return func


@shared_options
def denoise(image, *, preset=None, iterations=None, lr=None, stop="auto", ground_truth=None, seed=0,
            device="auto", channel_axis=None, precision=None, architecture=None, network=None,
            stopping=None, code=None, batch_size=None, warm_start=None, parallel=None,
            loss=None, noise="auto", noise_params=None, tile_size=None, max_memory=None,
            return_report=False, callback=None, cancel=None):
    """Denoise an image with Deep Image Prior (A = identity).

    Parameters
    ----------
    image : ndarray
        2D image, or a stack (any axes before Y, X, and the channel axis) restored slice by
        slice. Integer or float; not modified.
    ground_truth : ndarray, optional
        The clean image (the output's shape): PSNR and SSIM in the report.
    noise : {'auto', 'gaussian', 'poisson-gaussian', 'poisson', 'rician'}
        Denoising only: the noise model (see :mod:`napari_dip.core.noise_setup`). 'auto' (the
        default) estimates a model per slice: Gaussian noise is fitted with the squared error
        and the variance stopping rule, whose minimum search waits until the residual reaches
        the estimated noise level ('gaussian': the plain variance rule); signal-dependent noise
        (shot noise) with the model's loss and the discrepancy stop (docs/real-noise.md). A
        ``loss`` given with 'auto' is used as is (the Gaussian setting); with another model
        it is refused.
    noise_params : (float, float), optional
        Denoising only: (a, b) of variance = a * x + b in the input's units, instead of an
        estimate per slice.

    Other Parameters
    ----------------
    {options}

    Returns
    -------
    output : ndarray
        float32 in the input's intensity units, the input's shape.
    report : dict
        Only with ``return_report``.
    """
    return _restore("denoise", image, Options.of(locals()), ground_truth=ground_truth,
                    return_report=return_report, callback=callback, cancel=cancel)


@shared_options
def super_resolve(image, factor: int, *, preset=None, iterations=None, lr=None, stop="auto",
                  ground_truth=None, seed=0, device="auto", channel_axis=None, precision=None,
                  architecture=None, network=None, stopping=None, code=None, batch_size=None,
                  warm_start=None, parallel=None, loss=None, tile_size=None, max_memory=None,
                  return_report=False, callback=None, cancel=None):
    """Super-resolve an image by an integer ``factor`` with a Lanczos2 downsampling model.

    Parameters
    ----------
    image : ndarray
        The low-resolution image or stack (see :func:`denoise`).
    factor : int
        2 to 32: the output's Y and X are ``factor`` times the input's.
    ground_truth : ndarray, optional
        The clean image, the output's shape: PSNR and SSIM in the report.

    Other Parameters
    ----------------
    {options}

    Returns
    -------
    output : ndarray
        float32 in the input's units, Y and X times ``factor``.
    report : dict
        Only with ``return_report`` (its PSNR baseline is bicubic upsampling).
    """
    return _restore("superres", image, Options.of(locals()), factor=factor, ground_truth=ground_truth,
                    return_report=return_report, callback=callback, cancel=cancel)


@shared_options
def inpaint(image, mask=None, *, preset=None, iterations=None, lr=None, stop="auto", ground_truth=None,
            seed=0, device="auto", channel_axis=None, precision=None, architecture=None, network=None,
            stopping=None, code=None, batch_size=None, warm_start=None, parallel=None,
            loss=None, tile_size=None, max_memory=None, return_report=False, callback=None, cancel=None):
    """Fill the pixels where ``mask`` is 0.

    Parameters
    ----------
    image : ndarray or numpy.ma.MaskedArray
        The damaged image or stack (see :func:`denoise`). A masked array's masked pixels
        are filled too (combined with ``mask``).
    mask : ndarray, optional
        1 (or True) = known pixel, 0 = to fill: the image's Y, X shape (every slice) or its
        full shape. Refused when it marks no known pixel, holds NaN or has another shape.
        Needed unless ``image`` is a masked array.
    ground_truth : ndarray, optional
        The clean image, the image's shape: PSNR and SSIM in the report.

    Other Parameters
    ----------------
    {options}

    Returns
    -------
    output : ndarray
        float32 in the input's intensity units, the input's shape.
    report : dict
        Only with ``return_report``.
    """
    return _restore("inpaint", image, Options.of(locals()), inputs={"mask": mask}, ground_truth=ground_truth,
                    return_report=return_report, callback=callback, cancel=cancel)


@shared_options
def deconvolve(image, psf=None, *, psf_sigma=None, boundary="reflect", preset=None, iterations=None, lr=None,
               stop="auto", ground_truth=None, seed=0, device="auto", channel_axis=None, precision=None,
               architecture=None, network=None, stopping=None, code=None, batch_size=None,
               warm_start=None, parallel=None, loss=None, tile_size=None, max_memory=None, return_report=False,
               callback=None, cancel=None):
    """Deblur an image blurred by a known point spread function, with Deep Image Prior.

    The network's image x is fitted so that ``psf * x`` matches the image (A = convolution
    with the PSF, :class:`napari_dip.core.operators.Convolve`); no training data is needed.
    The 'fast' preset fits 2000 iterations, 'paper' 5000.

    Parameters
    ----------
    image : ndarray
        The blurred image or stack (see :func:`denoise`); every slice has the same PSF.
    psf : ndarray, optional
        The 2D point spread function (kh, kw), normalised to sum 1; its centre is pixel
        (kh // 2, kw // 2). Give it or ``psf_sigma``.
    psf_sigma : float, optional
        A Gaussian PSF of this standard deviation in pixels instead.
    boundary : {'reflect', 'zero', 'circular'}
        How the image continues past its edges in the blur model.
    ground_truth : ndarray, optional
        The sharp image, the image's shape: PSNR and SSIM in the report.

    Other Parameters
    ----------------
    {options}

    Returns
    -------
    output : ndarray
        float32 in the input's intensity units, the input's shape.
    report : dict
        Only with ``return_report``.
    """
    from .core.operators import gaussian_psf
    if (psf is None) == (psf_sigma is None):
        raise ValueError("deconvolution needs a PSF: give psf (a 2D array) or psf_sigma (pixels), not both")
    if psf is None:
        psf = gaussian_psf(psf_sigma)
    else:
        psf = np.asarray(psf)
        if psf.dtype.kind not in "buif":
            raise ValueError(f"psf has unsupported dtype {psf.dtype}; use a real 2D array")
        psf = _torch().from_numpy(np.ascontiguousarray(psf, dtype=np.float32))
    return _restore("deconvolve", image, Options.of(locals()), inputs={"psf": psf, "boundary": boundary},
                    ground_truth=ground_truth, return_report=return_report, callback=callback, cancel=cancel)


@shared_options
def restore(observed, operator, *, shape=None, preset=None, iterations=None, lr=None, stop="auto",
            ground_truth=None, seed=0, device="auto", channel_axis=None, precision=None, architecture=None,
            network=None, stopping=None, code=None, batch_size=None, warm_start=None, parallel=None,
            loss=None, tile_size=None, max_memory=None, return_report=False, callback=None, cancel=None):
    """Restore an image from observations of it through your own forward operator.

    Deep Image Prior with A = ``operator``: the network's image x is fitted so that
    ``operator(x)`` matches ``observed``, with the same stopping rules, stacks and reports as
    the other functions.

    Parameters
    ----------
    observed : ndarray
        The observation, or a stack of them (see :func:`denoise`), in any intensity units;
        the fit works in [0, 1] (uint8: /255; floats in [0, 1] as they are; else min..max).
    operator : torch.nn.Module or callable
        Maps a batch of images, a float32 tensor (N, C, H, W) in [0, 1] units, to their
        observations (N, C, h, w); differentiable, acting on each image alone. It is checked
        once on a blank image before fitting. Large images are fitted in tiles only when it
        keeps the image's size and says how far (pixels) it reaches with an integer ``halo``
        attribute.
    shape : (int, int), optional
        The image's (H, W) when it differs from the observation's (h, w).
    ground_truth : ndarray, optional
        The clean image, the restored image's shape: PSNR and SSIM in the report.

    Other Parameters
    ----------------
    {options}

    Returns
    -------
    output : ndarray
        float32 in the observation's intensity units: its shape, with Y and X set to ``shape``.
    report : dict
        Only with ``return_report``.
    """
    if not callable(operator):
        raise TypeError(f"operator must be a torch.nn.Module or a callable on (N, C, H, W) tensors, "
                        f"got {type(operator).__name__}")
    return _restore("restore", observed, Options.of(locals()), inputs={"operator": operator}, shape=shape,
                    ground_truth=ground_truth, return_report=return_report, callback=callback, cancel=cancel)
