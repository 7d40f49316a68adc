"""``fit_decoder``: the Deep Decoder on one 2D image, as patch grids and ensembles in one batch.

Every fit goes through :func:`napari_dip.api.run` (and so the one loop,
:func:`napari_dip.core.fit.fit`) with the task's operator from :mod:`napari_dip.core.task`:
each slice expands into G problems, the N ensemble members times the R x C patches
(:class:`DecoderParts`), packed as separate networks with seeds ``seed .. seed + G - 1``
(member m, patch p has seed ``seed + m * R * C + p``). Patches of a grid abut; an image too
large for the memory budget (or ``tile_size``) is fitted as overlapping tiles instead, blended
back without seams (:mod:`napari_dip.core.tiling`), in batches the budget holds. Either way
one spatially coherent code spans the image and each problem gets its piece of it.
:func:`decoder_run` walks a stack (the widget's "all slices"); :func:`fit_decoder` fits one image.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .arrays import Intensity, check_image, layout_of, pad_reflect, padded_size
from .core.tiling import TileGrid

log = logging.getLogger("napari_dip")

TASKS = ("fit", "denoise", "superres", "inpaint")
CODE_KINDS = ("uniform", "blurred", "perlin")


@dataclass
class DecoderResult:
    """Outputs in the input's units and layout (Y and X times the factor) and the report.

    ``output`` is the stitched fit (the members' mean for an ensemble), ``members`` has one
    stitched fit per member (N, ...), ``std`` the per-pixel standard deviation across members
    (zeros for one member), ``patches`` the R x C per-patch outputs of the mean, row by row.
    """

    output: np.ndarray
    members: np.ndarray
    std: np.ndarray
    patches: list[np.ndarray]
    report: dict = field(default_factory=dict)


def parse_grid(patches) -> tuple[int, int]:
    """(R, C) from 'RxC', an int n (n x n) or a pair."""
    if isinstance(patches, str):
        parts = patches.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"patches must look like RxC (e.g. 2x2, 4x5), got {patches!r}")
        grid = int(parts[0]), int(parts[1])
    elif isinstance(patches, int):
        grid = patches, patches
    else:
        grid = tuple(int(p) for p in patches)
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"patches needs two positive counts (rows, columns), got {patches!r}")
    return grid


def code_kind(code: str, code_3d: bool) -> str:
    """The :mod:`napari_dip.core.inputs` kind for a decoder code name (uniform means [0, 1))."""
    if code not in CODE_KINDS:
        raise ValueError(f"unknown decoder code {code!r}; choose one of {', '.join(CODE_KINDS)}")
    kind = "uniform01" if code == "uniform" else code
    return kind + "-3d" if code_3d else kind


def spanning_code(kind: str, shape: tuple[int, int, int], seed: int, *, feature_size: float):
    """One code (k, H0, W0) spanning a whole grid; its tiles are cut from it, so neighbouring
    tiles get neighbouring (or, where they overlap, the same) pieces of one spatially coherent
    code, and a grid of one tile gets exactly the code of a single fit."""
    import torch

    from .core.inputs import make_code
    k, h0, w0 = shape
    gen = torch.Generator().manual_seed(int(seed) + 2)
    return make_code(kind, k, h0, w0, generator=gen, feature_size=feature_size)


class DecoderParts:
    """The problems of every slice of a run: N ensemble members x the tiles of a grid.

    ``grid`` (a :class:`~napari_dip.core.tiling.TileGrid` on the observed image) is either R x C
    abutting patches or overlapping tiles. Problem t of a slice is member ``t // T``, tile
    ``t % T`` (T tiles, row by row) with seed ``seed + t``; each tile observes its piece of the
    slice padded by reflection to the grid, and its code is its piece of the member's one
    coherent code over the grid. :func:`napari_dip.api.run` calls the object with the run's
    slices (see its ``parts``) and hands every finished problem to :meth:`add`; a member's image
    is its tiles blended with the grid's weights (abutting patches: put side by side), a
    slice's output the members' mean, clipped to [0, 1] in the fit's units, and :meth:`result`
    gives all that was fitted.
    """

    def __init__(self, *, grid: TileGrid, ensemble: int, code: str, code_3d: bool, feature_size: float,
                 reference: bool, channel_axis: int | None, tiled: bool = False):
        self.grid, self.ensemble, self.tiled = grid, ensemble, tiled
        self.code, self.code_3d, self.feature_size = code, code_3d, feature_size
        self.kind = code_kind(code, code_3d)
        self.reference = reference  # the image is its own reference (task 'fit' with no ground truth)
        self.channel_axis = channel_axis  # where a slice's results keep their channels
        self.outputs: dict[int, dict[int, np.ndarray]] = {}  # slice -> problem -> (C, th f, tw f)
        self.fits: dict[int, dict] = {}  # slice -> members, mean, std, blended mean (fit units)
        self._codes: dict[int, object] = {}

    def __call__(self, config, *, src, gt, mask, intensity: Intensity, spatial: tuple[int, int]) -> "DecoderParts":
        self.config, self.src, self.gt, self.mask, self.intensity = config, src, gt, mask, intensity
        self.spatial = spatial
        self.grid_hr = self.grid.scaled(config.factor)
        return self

    @property
    def tiles(self) -> int:
        return self.grid.count

    @property
    def count(self) -> int:
        return self.ensemble * self.tiles

    @property
    def fitted(self) -> tuple[int, int]:
        return self.grid_hr.tile

    def seeds(self, batch: Sequence[tuple[int, int]]) -> list[int]:
        return [self.config.seed + t for _, t in batch]

    def _pieces(self, x: np.ndarray, grid: TileGrid) -> np.ndarray:
        """(C, h, w) padded by reflection to ``grid`` and cut into its tiles (T, C, th, tw)."""
        return grid.cut(pad_reflect(x, *grid.covered))

    def _truth(self, i: int) -> np.ndarray | None:
        """Slice ``i``'s reference in the fit's units: the ground truth, or the image itself."""
        if self.gt is not None:
            return self.intensity.to_unit(self.gt[i])
        return self.intensity.to_unit(self.src[i]) if self.reference else None

    def inputs(self, batch: Sequence[tuple[int, int]]):
        """(observed, reference or None, mask or None) tensors (n, C, th, tw) of the problems."""
        import torch
        slices = list(dict.fromkeys(i for i, _ in batch))

        def stack(image_of: Callable, grid: TileGrid):
            cut = {i: self._pieces(image_of(i), grid) for i in slices}
            return torch.from_numpy(np.ascontiguousarray(np.stack([cut[i][t % self.tiles] for i, t in batch])))

        return (stack(lambda i: self.intensity.to_unit(self.src[i]), self.grid),
                None if self._truth(slices[0]) is None else stack(self._truth, self.grid_hr),
                None if self.mask is None else stack(lambda i: self.mask[i], self.grid))

    def observed(self, i: int, t: int) -> np.ndarray:
        return self._pieces(self.intensity.to_unit(self.src[i]), self.grid)[t % self.tiles]

    def codes(self, batch: Sequence[tuple[int, int]]):
        """Each problem's piece of its member's code (every slice uses the same codes)."""
        import torch
        k, h0, _ = self.config.network.code_shape(*self.fitted)
        code_grid = self.grid_hr.reduced(self.fitted[0] // h0)
        for m in {t // self.tiles for _, t in batch} - set(self._codes):
            whole = spanning_code(self.kind, (k, *code_grid.covered), self.config.seed + m * self.tiles,
                                  feature_size=self.feature_size)
            self._codes[m] = code_grid.cut(whole)
        return torch.stack([self._codes[t // self.tiles][t % self.tiles] for _, t in batch])

    def _blended(self, outputs: np.ndarray) -> np.ndarray:
        """(N * T, C, th f, tw f) -> (N, C, H', W'), each member's tiles blended over the grid."""
        members = np.zeros((self.ensemble, outputs.shape[1], *self.grid_hr.covered), np.float32)
        for t, tile in enumerate(outputs):
            self.grid_hr.add(members[t // self.tiles], tile, t % self.tiles)
        return members

    def _crop(self, x: np.ndarray) -> np.ndarray:
        f = self.config.factor
        return x[..., : self.spatial[0] * f, : self.spatial[1] * f]

    def add(self, out_slice: np.ndarray, i: int, t: int, restored: np.ndarray) -> bool:
        """Keep problem ``t`` of slice ``i`` (fit units); once all are in, write the slice's
        members' mean into ``out_slice`` (the input's units) and return True."""
        done = self.outputs.setdefault(i, {})
        done[t] = restored
        if len(done) < self.count:
            return False
        padded = self._blended(np.stack([done.pop(k) for k in range(self.count)]))
        members = np.clip(self._crop(padded), 0, 1)
        mean = members.mean(0)
        self.fits[i] = {"members": members, "mean": mean, "std": members.std(0), "mean_padded": padded.mean(0)}
        out_slice[...] = self.intensity.from_unit(mean)
        return True

    def preview(self, batch: Sequence[tuple[int, int]], preview: np.ndarray) -> np.ndarray | None:
        """The members' blended mean of every slice of ``batch`` in the input's units, or None
        unless the batch holds all of their problems."""
        slices = list(dict.fromkeys(i for i, _ in batch))
        if len(batch) != len(slices) * self.count:
            return None
        per_slice = preview.reshape(len(slices), self.count, *preview.shape[1:])
        return np.stack([self.intensity.from_unit(self._crop(self._blended(p).mean(0)))
                         for p in per_slice]).astype(np.float32)

    def _user(self, x: np.ndarray) -> np.ndarray:
        """(C, y, x) in the input's units -> the slice's layout."""
        return x[0] if self.channel_axis is None else np.moveaxis(x, 0, self.channel_axis)

    def result(self, i: int, fitted: dict, header: dict) -> DecoderResult:
        """Slice ``i``'s result: its arrays in the input's units and layout, and its report
        (``fitted``: the slice's record from :func:`~napari_dip.api.run`, ``header``: the run's
        report)."""
        fit = self.fits[i]
        intensity = self.intensity
        patches = [self._user(intensity.from_unit(np.clip(p, 0, 1))) for p in self.grid_hr.cut(fit["mean_padded"])]
        report = _report(self, i, fitted, header)
        return DecoderResult(output=self._user(intensity.from_unit(fit["mean"])),
                             members=np.stack([self._user(intensity.from_unit(m)) for m in fit["members"]]),
                             std=self._user(fit["std"] * intensity.scale).astype(np.float32),
                             patches=patches, report=report)


def _settings(image, *, task, channels, blocks, scale, upsample, code, code_3d, feature_size, patches, ensemble,
              factor, mask, iterations, lr, stop, seed, ground_truth, channel_axis, precision, preview_every,
              device, tile_size, max_memory):
    """Validate a decoder run's settings (one clear error each, before any compute): the task's
    config, its parts, the run's inputs and its batch size (every problem in one batch, unless
    the memory plan holds fewer)."""
    from .core.fit import resolve_device
    from .core.memory import format_bytes, plan
    from .core.nets.decoder import DecoderConfig
    from .core.task import make_config
    from .tiled import overlap_for

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not isinstance(ensemble, int) or ensemble < 1:
        raise ValueError(f"ensemble must be a positive integer, got {ensemble!r}")
    grid = parse_grid(patches)
    kind = code_kind(code, code_3d)
    layout = layout_of(check_image(image, "image", channel_axis), channel_axis)
    f = factor if task == "superres" else 1
    net = DecoderConfig(channels=tuple(channels) if isinstance(channels, (list, tuple)) else channels,
                        blocks=blocks, scale=scale, upsample=upsample).validate()
    config = make_config(task, factor=f, iterations=iterations, lr=lr,
                         code_noise=0.0, ema=0.0, stop=stop, seed=seed, precision=precision,
                         network=net, code=kind, preview_every=preview_every)
    if stop == "oracle" and ground_truth is None and task != "fit":
        raise ValueError("stop='oracle' needs ground_truth (it is for evaluation only)")
    h, w = layout.spatial
    rows, cols = grid
    if h // rows < 1 or w // cols < 1:
        raise ValueError(f"patches={rows}x{cols} is too fine for a {h}x{w} image")
    ph, pw = padded_size(net, math.ceil(h / rows), math.ceil(w / cols), f)
    if (rows - 1) * ph >= h or (cols - 1) * pw >= w:
        raise ValueError(f"patches={rows}x{cols} with scale {scale} leaves whole patches outside the "
                         f"{h}x{w} image (patch sides are rounded up to multiples of the scale, here "
                         f"{ph}x{pw}); use fewer patches or a smaller scale")
    memory = plan((ph * f, pw * f), net, channels=layout.channels, factor=f, device=resolve_device(device),
                  max_memory=max_memory, tile_size=tile_size, precision=config.fit.precision)
    tiled = memory.tile is not None
    if tiled and grid != (1, 1):
        raise ValueError(f"patches={rows}x{cols} and tiles are two ways of cutting the image; a patch of "
                         f"{ph * f}x{pw * f} does not fit the memory budget whole: use more patches, or "
                         "patches=1x1 to let the budget pick overlapping tiles")
    if tiled:  # overlapping tiles whose starts are whole code pixels, blended back
        th, tw = memory.tile
        align = scale // math.gcd(scale, f)
        covered = (-(-h // align) * align, -(-w // align) * align)
        tile_grid = TileGrid.make(covered, (th // f, tw // f), overlap_for(min(th, tw)) // f, align=align)
    else:
        tile_grid = TileGrid.make((rows * ph, cols * pw), (ph, pw), 0)  # abutting patches
    inputs = {}
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpainting needs a mask (1 = known pixel, 0 = to fill)")
        inputs["mask"] = mask
    axis = None
    if layout.channel_axis is not None:  # where one slice's (Y, X, C) or (C, Y, X) keeps its channels
        axis = max(0, layout.channel_axis - (len(layout.shape) - 3))
    parts = DecoderParts(grid=tile_grid, ensemble=ensemble, code=code, code_3d=code_3d, feature_size=feature_size,
                         reference=task == "fit" and ground_truth is None, channel_axis=axis, tiled=tiled)
    batch = parts.count if max_memory is None and not tiled else min(parts.count, memory.batch_size)
    if tiled:
        log.info("tiling: %d tile(s) of %dx%d (%d x %d) x %d member(s) in batches of %d: about %s per batch "
                 "(budget %s)", tile_grid.count, th, tw, tile_grid.rows, tile_grid.cols, ensemble, batch,
                 format_bytes(memory.bytes_per_problem * batch), format_bytes(memory.budget))
    return config, parts, inputs, batch


def decoder_run(image, *, task: str = "fit", channels: int | tuple[int, ...] = 64, blocks: int = 6,
                scale: int = 16, upsample: str = "bilinear", code: str = "blurred", code_3d: bool = False,
                feature_size: float = 4.0, patches="1x1", ensemble: int = 1, factor: int = 2, mask=None,
                iterations: int = 2000, lr: float = 0.01, stop: str = "fixed", seed: int = 0,
                ground_truth=None, channel_axis: int | None = None, device: str = "auto",
                precision: str | None = None, cancel: Callable[[], bool] | None = None, preview_every: int = 0,
                out: np.ndarray | None = None, tile_size: int | None = None, max_memory=None):
    """Fit Deep Decoders to every slice of ``image`` through :func:`napari_dip.api.run`: a
    generator of its events that returns (one :class:`DecoderResult` per finished slice, the
    run's report). Settings as for :func:`fit_decoder`; ``out`` (the output's shape) receives
    every slice's members' mean as it finishes. The report is the last slice's decoder report
    with the run's ``slices`` records (their ``psnr``/``ssim``: the mean's against the
    reference), ``partial`` and ``seconds``, and ``slice_reports`` for more than one slice.
    """
    from .api import run

    config, parts, inputs, batch = _settings(
        image, task=task, channels=channels, blocks=blocks, scale=scale, upsample=upsample, code=code,
        code_3d=code_3d, feature_size=feature_size, patches=patches, ensemble=ensemble, factor=factor, mask=mask,
        iterations=iterations, lr=lr, stop=stop, seed=seed, ground_truth=ground_truth, channel_axis=channel_axis,
        precision=precision, preview_every=preview_every, device=device, tile_size=tile_size, max_memory=max_memory)
    _, report = yield from run(config, image, channel_axis=channel_axis, inputs=inputs, ground_truth=ground_truth,
                               device=device, out=out, cancel=cancel, batch_size=batch, parts=parts)
    results = [parts.result(r["slice"], r, report) for r in report["slices"] if r["slice"] in parts.fits]
    if not results:  # stopped before a slice was done
        return results, report
    for record, result in zip(report["slices"], results):
        if "mean" in result.report:
            record.update(psnr=result.report["mean"]["psnr"], ssim=result.report["mean"]["ssim"])
    summary = {**results[-1].report, "slices": report["slices"], "partial": report["partial"],
               "seconds": report["seconds"]}
    if len(results) > 1:
        summary["slice_reports"] = [r.report for r in results]
    return results, summary


def fit_decoder(image, *, task: str = "fit", channels: int | tuple[int, ...] = 64, blocks: int = 6,
                scale: int = 16, upsample: str = "bilinear", code: str = "blurred", code_3d: bool = False,
                feature_size: float = 4.0, patches="1x1", ensemble: int = 1, factor: int = 2, mask=None,
                iterations: int = 2000, lr: float = 0.01, stop: str = "fixed", seed: int = 0,
                ground_truth=None, channel_axis: int | None = None, device: str = "auto",
                precision: str | None = None, callback: Callable | None = None,
                cancel: Callable[[], bool] | None = None, preview_every: int = 0, tile_size: int | None = None,
                max_memory=None) -> DecoderResult:
    """Fit Deep Decoders to a 2D image (Y, X), or (Y, X) plus a channel axis.

    ``task``: ``fit`` (represent the image itself; it is also the reference for metrics),
    ``denoise``, ``superres`` (by ``factor``) or ``inpaint`` (``mask``: 1 = known, 0 = fill).
    Network: ``channels`` k (int or one per block), ``blocks`` l, integer input ``scale`` s
    (the code is H/s x W/s), ``upsample`` ('bilinear' or 'nearest'). Code: ``code``
    ('uniform' in [0, 1], 'blurred' 3x3 sigma 0.8, 'perlin' with ``feature_size`` in code
    pixels), ``code_3d`` (channels interpolated / sliced from a 3D volume). ``patches``
    ('RxC') fits a grid of patches with one coherent code; ``ensemble`` N fits N
    independently initialised decoders. All G = N * R * C fits run as one batch. An image
    that does not fit ``max_memory`` (bytes or e.g. '4GB'; default: a safe share of the free
    RAM or GPU memory) whole, or any with ``tile_size`` (a tile side in output pixels), is fitted
    as overlapping tiles of one coherent code blended back without seams, in batches the
    budget holds (``patches`` must then be 1x1); the report says ``tiled``.
    ``ground_truth`` (the output's shape) gives per-member PSNR/SSIM/MS-SSIM/VIF and the CV.
    ``stop`` ('fixed' default, 'oracle' with a reference), ``seed``, ``device``,
    ``precision``, ``callback`` (every event of :func:`napari_dip.api.run`: a
    :class:`~napari_dip.api.SliceProgress` per iteration, whose lists hold the G fits' values
    and, every ``preview_every`` iterations, whose preview is the members' stitched mean in
    the image's units; then a :class:`~napari_dip.api.SliceDone`), ``cancel`` (polled).
    """
    from .core.fit import drain

    layout = layout_of(check_image(image, "image", channel_axis), channel_axis)
    if layout.n_slices != 1:
        raise ValueError(f"fit_decoder takes one 2D image (optionally with channel_axis), got shape "
                         f"{layout.shape}; pass one slice (e.g. image[k]); the sweep walks the slices of a stack")
    results, _ = drain(decoder_run(
        image, task=task, channels=channels, blocks=blocks, scale=scale, upsample=upsample, code=code,
        code_3d=code_3d, feature_size=feature_size, patches=patches, ensemble=ensemble, factor=factor, mask=mask,
        iterations=iterations, lr=lr, stop=stop, seed=seed, ground_truth=ground_truth, channel_axis=channel_axis,
        device=device, precision=precision, cancel=cancel, preview_every=preview_every, tile_size=tile_size,
        max_memory=max_memory), callback)
    return results[0]


def _report(parts: DecoderParts, i: int, fitted: dict, header: dict) -> dict:
    """Slice ``i``'s decoder report: settings, cost, per-member metrics against the reference,
    the ensemble's stability and spread, per-patch metrics."""
    from dataclasses import asdict

    from .core.metrics import mean_pairwise_psnr, quality, stability
    config, net, grid, ensemble = parts.config, parts.config.network, parts.grid, parts.ensemble
    fit = parts.fits[i]
    members, mean, truth = fit["members"], fit["mean"], parts._truth(i)
    patch_size = parts.fitted
    pixels = patch_size[0] * patch_size[1] * members.shape[1]
    iterations = fitted["iterations"]
    problems = fitted["tiles"]  # one record per problem of the slice, in order
    report = {
        "task": config.task, "factor": config.factor, "seed": config.seed, "stop": config.stop,
        "network": {"type": "DecoderConfig", **asdict(net)}, "code": parts.code, "code_3d": parts.code_3d,
        "code_kind": config.code, "feature_size": parts.feature_size, "fit": asdict(config.fit),
        "patches": f"{grid.rows}x{grid.cols}", "patch_size": list(patch_size), "ensemble": ensemble,
        "tiled": parts.tiled, "batch_size": header["batch_size"],
        "device": header["device"], "napari_dip": header["napari_dip"], "input_shape": header["input_shape"],
        "parameters": header["parameters"], "params_per_pixel": header["parameters"] / pixels,
        "iterations": iterations, "seconds": fitted["seconds"],
        "seconds_per_iteration": fitted["seconds"] / max(iterations, 1),
        "cancelled": bool(fitted.get("partial")), "restarts": problems[0]["restarts"],
        "spread": float(fit["std"].mean()),
    }
    seeds = [config.seed + m * grid.count for m in range(ensemble)]
    losses = [p["final_loss"] for p in problems]
    per_member = (None if None in losses
                  else np.asarray(losses, float).reshape(ensemble, -1).mean(1))  # over each member's patches
    report["members"] = [{"member": m, "seed": s} for m, s in enumerate(seeds)]
    if truth is not None:
        for m, entry in enumerate(report["members"]):
            entry.update(quality(members[m], truth))
        report["mean"] = quality(mean, truth)
        psnrs = [r["psnr"] for r in report["members"]]
        report["psnr_mean"] = float(np.mean(psnrs))
        if ensemble > 1:
            report.update(stability(psnrs))
    if per_member is not None:
        for entry, loss in zip(report["members"], per_member):
            entry["final_loss"] = float(loss)
    if ensemble > 1:
        report["mean_pairwise_psnr"] = mean_pairwise_psnr(members)
    if grid.count > 1:
        height, width = mean.shape[-2:]
        grid_hr = parts.grid_hr
        ref = None if truth is None else pad_reflect(truth, *grid_hr.covered)
        rows = []
        for k, (patch, (y0, x0)) in enumerate(zip(grid_hr.cut(fit["mean_padded"]), grid_hr.boxes())):
            r, c = divmod(k, grid.cols)
            # Metrics on the part of the patch inside the image (padding left out).
            hh, ww = min(patch_size[0], height - y0), min(patch_size[1], width - x0)
            entry = {"row": r, "col": c, "y": y0, "x": x0, "height": max(hh, 0), "width": max(ww, 0)}
            if ref is not None and hh > 0 and ww > 0:
                entry.update(quality(np.clip(patch[:, :hh, :ww], 0, 1), ref[:, y0:y0 + hh, x0:x0 + ww]))
            rows.append(entry)
        report["patch_metrics"] = rows
    return report
