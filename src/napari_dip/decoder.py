"""``fit_decoder``: the Deep Decoder on one 2D image, as patch grids and ensembles in one batch.

Every fit goes through the one loop (:func:`napari_dip.core.fit.fit`) with the task's
operator from :mod:`napari_dip.core.task`. The G problems of a run are the N ensemble
members times the R x C patches, packed as separate networks with seeds
``seed .. seed + G - 1`` (member m, patch p has seed ``seed + m * R * C + p``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .arrays import Intensity, as_slices, check_image, layout_of, pad_reflect, padded_size

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


def grid_codes(kind: str, shape: tuple[int, int, int], grid: tuple[int, int], seed: int, *,
               feature_size: float):
    """One code (k, R*h0, C*w0) for the whole grid, cut into R*C patch codes (R*C, k, h0, w0).

    Neighbouring patches get neighbouring pieces of one spatially coherent code; a 1 x 1 grid
    gets exactly the code of a single fit.
    """
    import torch

    from .core.inputs import make_code
    k, h0, w0 = shape
    rows, cols = grid
    gen = torch.Generator().manual_seed(int(seed) + 2)
    full = make_code(kind, k, rows * h0, cols * w0, generator=gen, feature_size=feature_size)
    return full.reshape(k, rows, h0, cols, w0).permute(1, 3, 0, 2, 4).reshape(rows * cols, k, h0, w0)


def _cut(x: np.ndarray, grid: tuple[int, int], ph: int, pw: int) -> np.ndarray:
    """(C, R*ph, C*pw) -> (R*C, C, ph, pw), row by row."""
    rows, cols = grid
    c = x.shape[0]
    return x.reshape(c, rows, ph, cols, pw).transpose(1, 3, 0, 2, 4).reshape(rows * cols, c, ph, pw)


def _stitch(x: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, R*C, C, ph, pw) -> (N, C, R*ph, C*pw)."""
    n, _, c, ph, pw = x.shape
    rows, cols = grid
    return x.reshape(n, rows, cols, c, ph, pw).transpose(0, 3, 1, 4, 2, 5).reshape(n, c, rows * ph, cols * pw)


def fit_decoder(image, *, task: str = "fit", channels: int | tuple[int, ...] = 64, blocks: int = 6,
                scale: int = 16, upsample: str = "bilinear", code: str = "blurred", code_3d: bool = False,
                feature_size: float = 4.0, patches="1x1", ensemble: int = 1, factor: int = 2, mask=None,
                iterations: int = 2000, lr: float = 0.01, stop: str = "fixed", seed: int = 0,
                ground_truth=None, channel_axis: int | None = None, device: str = "auto",
                precision: str | None = None, callback: Callable | None = None,
                cancel: Callable[[], bool] | None = None, preview_every: int = 0) -> DecoderResult:
    """Fit Deep Decoders to a 2D image (Y, X), or (Y, X) plus a channel axis.

    ``task``: ``fit`` (represent the image itself; it is also the reference for metrics),
    ``denoise``, ``superres`` (by ``factor``) or ``inpaint`` (``mask``: 1 = known, 0 = fill).
    Network: ``channels`` k (int or one per block), ``blocks`` l, integer input ``scale`` s
    (the code is H/s x W/s), ``upsample`` ('bilinear' or 'nearest'). Code: ``code``
    ('uniform' in [0, 1], 'blurred' 3x3 sigma 0.8, 'perlin' with ``feature_size`` in code
    pixels), ``code_3d`` (channels interpolated / sliced from a 3D volume). ``patches``
    ('RxC') fits a grid of patches with one coherent code; ``ensemble`` N fits N
    independently initialised decoders. All G = N * R * C fits run as one batch.
    ``ground_truth`` (the output's shape) gives per-member PSNR/SSIM/MS-SSIM/VIF and the CV.
    ``stop`` ('fixed' default, 'oracle' with a ground truth), ``seed``, ``device``,
    ``precision``, ``callback`` (each loop progress event; every ``preview_every`` iterations
    it carries the G outputs as ``preview``), ``cancel`` (polled).
    """
    import torch

    from .core.fit import drain, fit, resolve_device
    from .core.nets.decoder import DecoderConfig
    from .core.task import build_problem, make_config

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not isinstance(ensemble, int) or ensemble < 1:
        raise ValueError(f"ensemble must be a positive integer, got {ensemble!r}")
    grid = parse_grid(patches)
    kind = code_kind(code, code_3d)
    image = check_image(image, "image", channel_axis)
    layout = layout_of(image, channel_axis)
    if layout.n_slices != 1:
        raise ValueError(f"fit_decoder takes one 2D image (optionally with channel_axis), got shape "
                         f"{image.shape}; pass one slice (e.g. image[k]); the sweep walks the slices of a stack")
    f = factor if task == "superres" else 1
    net = DecoderConfig(channels=tuple(channels) if isinstance(channels, (list, tuple)) else channels,
                        blocks=blocks, scale=scale, upsample=upsample).validate()
    config = make_config(task, factor=f, iterations=iterations, lr=lr,
                         code_noise=0.0, ema=0.0, stop=stop, seed=seed, precision=precision,
                         network=net, code=kind, preview_every=preview_every)
    intensity = Intensity.of(image)
    observed = intensity.to_unit(as_slices(image, layout)[0])
    truth = observed if task == "fit" and ground_truth is None else None
    if ground_truth is not None:
        gt = check_image(ground_truth, "ground_truth", channel_axis)
        if gt.shape != layout.output_shape(f):
            raise ValueError(f"ground_truth has shape {gt.shape}; it must match the output, shape "
                             f"{layout.output_shape(f)}")
        truth = intensity.to_unit(as_slices(gt, layout_of(gt, channel_axis))[0])
    if stop == "oracle" and truth is None:
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
    n_patch = rows * cols
    g = ensemble * n_patch

    def problems(x: np.ndarray, size: tuple[int, int]):
        cut = _cut(pad_reflect(x, grid[0] * size[0], grid[1] * size[1]), grid, *size)
        return torch.from_numpy(np.ascontiguousarray(np.tile(cut, (ensemble, 1, 1, 1))))

    obs_t = problems(observed, (ph, pw))
    gt_t = None if truth is None else problems(truth, (ph * f, pw * f))
    mask_t = None
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpainting needs a mask (1 = known pixel, 0 = to fill)")
        m = np.asarray(mask)
        if m.shape != (h, w):
            raise ValueError(f"mask has shape {m.shape}; use the image's Y, X shape {(h, w)}")
        mask_t = problems((m > 0).astype(np.float32)[None], (ph, pw))
    seeds = [seed + i for i in range(g)]
    problem = build_problem(config, obs_t, seeds=seeds, mask=mask_t, ground_truth=gt_t)
    shape = net.code_shape(ph * f, pw * f)
    problem.code = torch.cat([grid_codes(kind, shape, grid, seed + m * n_patch, feature_size=feature_size)
                              for m in range(ensemble)])
    dev = resolve_device(device)
    result = drain(fit(problem, config.fit, config.stop_rule(g), device=dev, cancel=cancel), callback)

    out = result.output.reshape(ensemble, n_patch, *result.output.shape[1:])
    padded = _stitch(out, grid)  # (N, C, R*ph*f, C*pw*f)
    members = np.clip(padded[:, :, : h * f, : w * f], 0, 1)
    mean = members.mean(0)
    std = members.std(0)
    mean_padded = padded.mean(0)
    report = _report(config, net, layout, dev, result, grid, ensemble, (ph * f, pw * f), code, code_3d,
                     feature_size, task, members, mean, std, truth, mean_padded, h * f, w * f)

    def user(x: np.ndarray) -> np.ndarray:  # (C, y, x) in [0, 1] -> the input's units and layout
        x = intensity.from_unit(x)
        return x[0] if layout.channel_axis is None else np.moveaxis(x, 0, layout.channel_axis)

    patch_arrays = [user(np.clip(p, 0, 1)) for p in _cut(mean_padded, grid, ph * f, pw * f)]
    std_user = std * intensity.scale
    return DecoderResult(output=user(mean), members=np.stack([user(m) for m in members]),
                         std=(std_user[0] if layout.channel_axis is None
                              else np.moveaxis(std_user, 0, layout.channel_axis)).astype(np.float32),
                         patches=patch_arrays, report=report)


def _report(config, net, layout, dev, result, grid, ensemble, patch_size, code, code_3d, feature_size,
            task, members, mean, std, truth, mean_padded, height, width) -> dict:
    from dataclasses import asdict

    from . import __version__
    from .core.metrics import mean_pairwise_psnr, quality, stability
    pixels = patch_size[0] * patch_size[1] * layout.channels
    report = {
        "task": task, "factor": config.factor, "seed": config.seed, "stop": config.stop,
        "network": {"type": "DecoderConfig", **asdict(net)}, "code": code, "code_3d": code_3d,
        "code_kind": config.code, "feature_size": feature_size, "fit": asdict(config.fit),
        "patches": f"{grid[0]}x{grid[1]}", "patch_size": list(patch_size), "ensemble": ensemble,
        "device": str(dev), "napari_dip": __version__, "input_shape": list(layout.shape),
        "parameters": result.parameters, "params_per_pixel": result.parameters / pixels,
        "iterations": result.iterations, "seconds": result.seconds,
        "seconds_per_iteration": result.seconds / max(result.iterations, 1),
        "cancelled": result.cancelled, "restarts": result.restarts,
        "spread": float(std.mean()),
    }
    seeds = [config.seed + m * grid[0] * grid[1] for m in range(ensemble)]
    if truth is not None:
        report["members"] = [{"member": m, "seed": s, **quality(members[m], truth)}
                             for m, s in enumerate(seeds)]
        report["mean"] = quality(mean, truth)
        psnrs = [r["psnr"] for r in report["members"]]
        report["psnr_mean"] = float(np.mean(psnrs))
        if ensemble > 1:
            report.update(stability(psnrs))
    else:
        report["members"] = [{"member": m, "seed": s} for m, s in enumerate(seeds)]
    if ensemble > 1:
        report["mean_pairwise_psnr"] = mean_pairwise_psnr(members)
    if grid != (1, 1):
        ph, pw = patch_size
        ref = None if truth is None else pad_reflect(truth, grid[0] * ph, grid[1] * pw)
        rows = []
        for i, patch in enumerate(_cut(mean_padded, grid, ph, pw)):
            r, c = divmod(i, grid[1])
            y0, x0 = r * ph, c * pw
            # Metrics on the part of the patch inside the image (padding left out).
            hh, ww = min(ph, height - y0), min(pw, width - x0)
            entry = {"row": r, "col": c, "y": y0, "x": x0, "height": max(hh, 0), "width": max(ww, 0)}
            if ref is not None and hh > 0 and ww > 0:
                entry.update(quality(np.clip(patch[:, :hh, :ww], 0, 1), ref[:, y0:y0 + hh, x0:x0 + ww]))
            rows.append(entry)
        report["patch_metrics"] = rows
    return report
