"""Quality harness: Deep Image Prior against classical baselines on real crops, in one command.

    python benchmarks/quality.py --crop 64 --slices 2 --iterations 1200 --out docs/quality

Writes ``quality.csv`` and ``quality.md`` to ``--out``. Every DIP fit is scored twice from
ONE run: the oracle (best PSNR against the ground truth over the run) and the automatic rule
(ES-WMV; what ``stop='auto'`` returns, since its state freezes once it stops). Baselines are
computed on the same noisy input: the input itself, bicubic (super-resolution),
scikit-image's TV-Chambolle (best of a few weights, chosen against the ground truth),
non-local means (``h = 0.8 sigma``) and BM3D when the ``bm3d`` package is installed.
Crops of the same shape are fitted together as one batch of independent networks; their
seconds are the batch time divided by the batch size. Every row names its reduced settings.

Experiments (``--experiments``): ``denoise`` (sigma 25/255 on EM, MRI, fluorescence and
natural crops), ``superres`` (x4, Lanczos operator: zebra and ISBI), ``architecture``
(skip vs residual U-Net on the denoising crops), ``presets`` (paper vs fast, oracle, on ISBI
and MRI crops), ``stopping`` (several automatic settings scored on the denoising fits),
``decoder`` (Deep Decoder fitting of whole axial MRI slices with the MRI report's best setting,
k 96, l 6, s 8, blurred code; 5000 iterations unless ``--iterations``), ``realnoise`` (the W2S
and FMD real-noise pairs: classical baselines at full size and on centre crops, DIP rows
``--realnoise-rows`` on ``--realnoise-crop`` centre crops, noise models estimated on the full
images, PSNR/SSIM after an affine fit to the clean average; see docs/real-noise.md) and
``isbi-panel`` (an ISBI section's own noise: noisy, VST+BM3D and DIP with ``noise='auto'``
side by side in ``real_noise_isbi.png``).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # evaluation.py, beside this script
EXPERIMENTS = ("denoise", "superres", "architecture", "presets", "stopping", "decoder", "realnoise",
               "isbi-panel")
DECODER = {"channels": 96, "blocks": 6, "scale": 8, "code": "blurred"}  # the MRI report's best
TV_WEIGHTS = (0.02, 0.05, 0.1, 0.2)
COLUMNS = ("experiment", "image", "kind", "crop", "degradation", "method", "preset", "architecture",
           "iterations", "stop_iteration", "psnr", "ssim", "seconds", "settings")


@dataclass
class Crop:
    """A clean crop (C, H, W) in [0, 1] and where it came from."""

    name: str
    kind: str
    image: np.ndarray


def _textured(a: np.ndarray, size: int) -> np.ndarray:
    """The size x size window (on a half-size grid) with the largest standard deviation."""
    h, w = a.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"--crop {size} is larger than an image of {h}x{w}")
    spots = [(y, x) for y in range(0, h - size + 1, size // 2) for x in range(0, w - size + 1, size // 2)]
    y, x = max(spots, key=lambda p: a[p[0]:p[0] + size, p[1]:p[1] + size].std())
    return a[y:y + size, x:x + size]


def _chw(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return np.ascontiguousarray(a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0))


def _png(path: Path) -> np.ndarray:
    import imageio.v3 as iio
    return iio.imread(path)[..., :3].astype(np.float32) / 255


def _isbi(data: Path, slices: int) -> list[tuple[int, np.ndarray]]:
    import tifffile
    stack = tifffile.imread(data / "em" / "isbi2012_train_volume.tif")
    picks = np.linspace(0, len(stack) - 1, slices).round().astype(int)
    return [(int(i), stack[i].astype(np.float32) / 255) for i in picks]


def denoise_crops(data: Path, size: int, slices: int) -> list[Crop]:
    """EM (ISBI slices), MRI (two axial slices, volume scaled by its maximum), fluorescence
    (W2S 400-frame average, FMD 50-frame average) and natural (F16, Set5 butterfly) crops."""
    import imageio.v3 as iio
    import nibabel as nib
    crops = [Crop(f"isbi-z{i}", "EM", _chw(_textured(a, size))) for i, a in _isbi(data, slices)]
    vol = nib.load(data / "mri" / "niimath_T1.nii.gz").get_fdata(dtype=np.float32)
    vol = np.clip(vol / vol.max(), 0, 1)
    crops += [Crop(f"mri-t1-axial{z}", "MRI", _chw(_textured(np.rot90(vol[:, :, z]), size))) for z in (80, 110)]
    w2s = iio.imread(data / "fluo" / "w2s" / "target_avg400_020_1.tif").astype(np.float32) / 255
    fmd = iio.imread(data / "fluo" / "fmd" / "gt_Confocal_FISH_3.png").astype(np.float32) / 255
    crops += [Crop("w2s-020", "fluorescence", _chw(_textured(w2s, size))),
              Crop("fmd-confocal", "fluorescence", _chw(_textured(fmd, size)))]
    crops += [Crop("F16", "natural", _chw(_textured(_png(data / "natural" / "F16_GT.png"), size))),
              Crop("butterfly", "natural", _chw(_textured(_png(data / "sr" / "Set5" / "butterfly.png"), size)))]
    return crops


def superres_crops(data: Path, size: int, slices: int) -> list[Crop]:
    """High-resolution crops: zebra (RGB) and ISBI slices."""
    crops = [Crop("zebra", "natural", _chw(_textured(_png(data / "natural" / "zebra_GT.png"), size)))]
    return crops + [Crop(f"isbi-z{i}", "EM", _chw(_textured(a, size))) for i, a in _isbi(data, slices)]


def mri_slices(data: Path, slices: int) -> list[Crop]:
    """Whole axial slices of the T1 volume around its middle, each scaled to [0, 1] by its min..max."""
    import nibabel as nib
    vol = nib.load(data / "mri" / "niimath_T1.nii.gz").get_fdata(dtype=np.float32)
    mid = vol.shape[2] // 2
    picks = [mid] if slices == 1 else np.linspace(mid - 10, mid + 10, slices).round().astype(int)
    out = []
    for z in picks:
        a = np.rot90(vol[:, :, int(z)])
        out.append(Crop(f"mri-t1-axial{int(z)}", "MRI", _chw((a - a.min()) / (a.max() - a.min()))))
    return out


def decoder_rows(crops: list[Crop], iterations: int, seed: int, precision: str) -> list[dict]:
    """Deep Decoder fits of clean slices (representation): PSNR/SSIM against the slice itself."""
    from napari_dip.decoder import fit_decoder
    rows = []
    for crop in crops:
        t = time.perf_counter()
        result = fit_decoder(crop.image[0], iterations=iterations, seed=seed, precision=precision,
                             device="cpu", **DECODER)
        p, q = score(result.output[None], crop.image)
        rows.append({"experiment": "decoder", "image": crop.name, "kind": crop.kind,
                     "crop": "x".join(map(str, crop.image.shape[1:])), "degradation": "none (fit)",
                     "method": "Deep Decoder fit", "preset": "", "architecture": "deep decoder",
                     "iterations": iterations, "stop_iteration": iterations, "psnr": p, "ssim": q,
                     "seconds": time.perf_counter() - t,
                     "settings": (f"k {DECODER['channels']}, l {DECODER['blocks']}, s {DECODER['scale']}, "
                                  f"{DECODER['code']} code, {iterations} it, seed {seed}, {precision}, "
                                  f"{result.report['parameters']} parameters")})
    return rows


def add_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise, clipped to [0, 1] (as the Deep Image Prior code does)."""
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)


def score(x: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of (C, H, W) images in [0, 1] (napari_dip.core.metrics)."""
    import torch
    from napari_dip.core.metrics import psnr, ssim
    a = torch.from_numpy(np.clip(x, 0, 1)[None].astype(np.float32))
    b = torch.from_numpy(ref[None].astype(np.float32))
    return float(psnr(a, b)[0]), float(ssim(a, b)[0])


def denoise_baselines(noisy: np.ndarray, clean: np.ndarray, sigma: float) -> list[tuple[str, str, np.ndarray, float]]:
    """(method, settings, output, seconds) for the classical denoisers."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
    axis = 0 if noisy.shape[0] > 1 else None
    img = noisy if axis is not None else noisy[0]
    out = [("noisy input", "", noisy, 0.0)]
    t = time.perf_counter()
    tvs = [(w, _chw_like(denoise_tv_chambolle(img, weight=w, channel_axis=axis), noisy)) for w in TV_WEIGHTS]
    w, best = max(tvs, key=lambda p: score(p[1], clean)[0])
    out.append(("TV-Chambolle", f"best weight of {TV_WEIGHTS} by PSNR: {w}", best, time.perf_counter() - t))
    t = time.perf_counter()
    nlm = denoise_nl_means(img, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                           fast_mode=True, channel_axis=axis)
    out.append(("non-local means", "h=0.8 sigma, patch 5, distance 6, fast", _chw_like(nlm, noisy),
                time.perf_counter() - t))
    try:
        import bm3d
    except ImportError:
        return out
    t = time.perf_counter()
    if axis is None:
        b = bm3d.bm3d(img, sigma_psd=sigma)
    else:
        b = np.moveaxis(bm3d.bm3d_rgb(np.moveaxis(img, 0, -1), sigma_psd=sigma), -1, 0)
    out.append(("BM3D", "bm3d package, sigma_psd=sigma", _chw_like(b, noisy), time.perf_counter() - t))
    return out


def _chw_like(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).reshape(like.shape)


def bicubic(low: np.ndarray, factor: int) -> np.ndarray:
    import torch
    t = torch.from_numpy(low[None])
    return torch.nn.functional.interpolate(t, scale_factor=factor, mode="bicubic", align_corners=False)[0].clamp(0, 1).numpy()


def fit_pair(config, observed: list[np.ndarray], truth: list[np.ndarray], autos=None) -> list[dict]:
    """Fit G same-shape problems in one batch; score the oracle and each automatic setting.

    Returns one dict per problem: oracle (psnr, ssim, iteration), autos [(settings, psnr,
    ssim, detected iteration, stop iteration)], seconds (batch time / G), iterations.
    """
    import torch
    from napari_dip.core.fit import drain, fit
    from evaluation import EvaluationStop  # benchmarks/, beside this script
    from napari_dip.core.task import build_problem
    autos = autos or [config.stopping]
    g = len(observed)
    size = truth[0].shape[-2:]
    if tuple(config.network.padded_size(*size)) != tuple(size):
        raise ValueError(f"--crop {size[0]} does not suit the {config.preset} network; use a multiple of "
                         f"its size step ({config.network.padded_size(1, 1)[0] // 2}) that is at least "
                         f"{config.network.padded_size(1, 1)[0]}")
    problem = build_problem(config, torch.from_numpy(np.stack(observed)), seeds=[config.seed] * g,
                            ground_truth=torch.from_numpy(np.stack(truth)))
    rule = EvaluationStop(g, autos)
    result = drain(fit(problem, config.fit, rule, device=torch.device("cpu")))
    per_iteration = result.seconds / result.iterations
    records = []
    oracle_out, oracle_it = rule.oracle.result()
    for k in range(g):
        rec = {"iterations": result.iterations, "seconds": result.seconds / g,
               "oracle": (*score(oracle_out[k].numpy(), truth[k]), oracle_it[k]), "autos": []}
        for s, auto in zip(autos, rule.autos):
            out, detected = auto.result()
            end = int(auto.stopped_at[k]) or result.iterations
            rec["autos"].append((s, *score(out[k].numpy(), truth[k]), detected[k], end, end * per_iteration / g))
        records.append(rec)
    return records


def _by_shape(images: list[np.ndarray]) -> dict:
    groups: dict = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return groups


def run_dip(config, observed: list[np.ndarray], truth: list[np.ndarray], autos=None) -> list[dict]:
    """``fit_pair`` over groups of same-shape problems, in input order."""
    records: list = [None] * len(observed)
    for idx in _by_shape(observed).values():
        for i, rec in zip(idx, fit_pair(config, [observed[i] for i in idx], [truth[i] for i in idx], autos)):
            records[i] = rec
    return records


def _stop_text(s) -> str:
    alpha = f", alpha {s.weight:.3g}" if s.variant == "emv" else ""
    return (f"{s.variant.upper()} W {s.window}, P {s.patience}, min {s.min_iterations}{alpha}, "
            f"returns {s.output}")


def dip_rows(crops: list[Crop], config, records: list[dict], base: dict, *,
             auto_index: int = 0) -> list[dict]:
    """Rows for the oracle and the automatic result of each crop."""
    rows = []
    net = config.architecture
    for crop, rec in zip(crops, records):
        settings = (f"{config.preset} preset, max {config.fit.iterations} it, seed {config.seed}, "
                    f"{config.fit.precision}")
        o = rec["oracle"]
        rows.append({**base, "image": crop.name, "kind": crop.kind, "method": "DIP oracle",
                     "preset": config.preset, "architecture": net, "iterations": rec["iterations"],
                     "stop_iteration": o[2], "psnr": o[0], "ssim": o[1], "seconds": rec["seconds"],
                     "settings": settings + ", best PSNR vs ground truth"})
        s, p, q, detected, end, secs = rec["autos"][auto_index]
        rows.append({**base, "image": crop.name, "kind": crop.kind, "method": "DIP auto",
                     "preset": config.preset, "architecture": net, "iterations": end,
                     "stop_iteration": detected, "psnr": p, "ssim": q, "seconds": secs,
                     "settings": f"{settings}, {_stop_text(s)}"})
    return rows


def baseline_rows(crop: Crop, outputs, clean: np.ndarray, base: dict) -> list[dict]:
    rows = []
    for method, settings, out, secs in outputs:
        p, q = score(out, clean)
        rows.append({**base, "image": crop.name, "kind": crop.kind, "method": method, "preset": "",
                     "architecture": "", "iterations": "", "stop_iteration": "", "psnr": p, "ssim": q,
                     "seconds": secs, "settings": settings})
    return rows


def stopping_grid(base) -> list:
    """Automatic settings compared by the ``stopping`` experiment (the first is the default)."""
    wmv = replace(base, variant="wmv", alpha=None)
    grid = [base, replace(base, min_iterations=0), replace(base, patience=150), replace(base, patience=600),
            replace(base, variant="emv", output="candidate"), replace(wmv, output="candidate"),
            replace(wmv, output="raw"), replace(wmv, output="window"), replace(wmv, output="candidate", window=50)]
    return list(dict.fromkeys(grid))


# ---- real noise (experiment "realnoise") -------------------------------------------------
REALNOISE_MODES = ("classical", "gaussian", "vst", "vst-mse", "gaussian-nll")
DIP_LABELS = {"gaussian": "DIP Gaussian MSE", "vst": "DIP VST domain (GAT, MSE, exact inverse)",
              "vst-mse": "DIP vst-mse loss", "gaussian-nll": "DIP gaussian-nll loss"}
W2S_PAIRS = ("020_1", "044_0", "077_2")


@dataclass
class Pair:
    """A real noisy image and its clean average, both (H, W) float in 8-bit units."""

    name: str
    noisy: np.ndarray
    clean: np.ndarray


def fluo_pairs(data: Path, crop: int | None = None) -> list[Pair]:
    """The three W2S pairs and the FMD pair; ``crop``: a centred crop x crop window."""
    import imageio.v3 as iio
    fluo = data / "fluo"
    files = [(f"w2s-{k}", fluo / "w2s" / f"input_avg1_{k}.tif", fluo / "w2s" / f"target_avg400_{k}.tif")
             for k in W2S_PAIRS]
    files.append(("fmd-confocal-fish3", fluo / "fmd" / "Confocal_FISH_3.png", fluo / "fmd" / "gt_Confocal_FISH_3.png"))
    pairs = []
    for name, noisy, clean in files:
        y, x = (iio.imread(p).astype(np.float64) for p in (noisy, clean))
        if crop:
            top, left = (y.shape[0] - crop) // 2, (y.shape[1] - crop) // 2
            y, x = y[top:top + crop, left:left + crop], x[top:top + crop, left:left + crop]
        pairs.append(Pair(name, y, x))
    return pairs


def estimate_model(pair: Pair):
    """The noise model of a pair's noisy image (8-bit units)."""
    from napari_dip.core.noise_estimate import estimate_noise
    return estimate_noise(pair.noisy).model


def affine_map(out: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The least-squares affine map of ``out`` onto ``clean``, scaled by 1/255: the noisy and
    clean images were each scaled to 8 bits on their own."""
    design = np.stack([np.ravel(out), np.ones(np.size(out))], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, clean.ravel(), rcond=None)
    return (design @ coef).reshape(clean.shape) / 255


def affine_score(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM (images scaled by 1/255) after :func:`affine_map`."""
    return score(affine_map(out, clean)[None], (clean / 255)[None])


def realnoise_classical(pairs: list[Pair], crop_text: str, full: list[Pair] | None = None) -> list[dict]:
    """Noisy input; NLM and BM3D with one sigma (a Gaussian model estimated from the image);
    VST+NLM and VST+BM3D with the estimated Poisson-Gaussian model (napari_dip.baselines).
    ``full``: the whole images the models are estimated from when ``pairs`` are crops."""
    from napari_dip.baselines import denoise_slice
    from napari_dip.core.noise_estimate import estimate_noise
    rows = []
    for pair, whole in zip(pairs, full or pairs):
        model = estimate_noise(whole.noisy).model
        gauss = estimate_noise(whole.noisy, "gaussian").model
        base = {"experiment": "realnoise", "image": pair.name, "kind": "fluorescence", "crop": crop_text,
                "degradation": "real (one frame)", "preset": "", "architecture": "", "iterations": "",
                "stop_iteration": ""}
        outs = [("noisy input", "", lambda: pair.noisy)]
        for method, name in (("nlm", "non-local means"), ("vst-bm3d", "BM3D")):
            outs.append((f"{name} (one sigma)", f"estimated sigma {gauss.sigma:.2f} (8-bit units)",
                         lambda m=method: denoise_slice(pair.noisy, m, gauss)))
            outs.append((f"VST+{name}", f"GAT with estimated {_model_text(model)}, exact unbiased inverse",
                         lambda m=method: denoise_slice(pair.noisy, m, model)))
        for method, settings, run in outs:
            t = time.perf_counter()
            out = run()
            secs = time.perf_counter() - t
            p, q = affine_score(out, pair.clean)
            rows.append({**base, "method": method, "psnr": p, "ssim": q, "seconds": secs, "settings": settings})
    return rows


def _model_text(model) -> str:
    return f"{model.kind} a {model.a:.3g}, b {model.b:.3g} (8-bit units)"


def realnoise_dip(pairs: list[Pair], mode: str, config, crop_text: str, models=None, every: int = 10,
                  trace: dict | None = None) -> list[dict]:
    """DIP on the pairs in one batch: ``gaussian`` (MSE on the image scaled by 1/255, today's
    default), ``vst`` (MSE on the generalised-Anscombe transform with the estimated model,
    back by the exact unbiased inverse), or a noise-model loss on the image scaled by 1/255
    with the estimated model (``vst-mse``, ``gaussian-nll``: napari_dip.core.noise_losses). Oracle: the best affine PSNR over outputs taken
    every ``every`` iterations; auto: what the automatic rule returns. ``models``: the noise
    models (8-bit units; default: estimated from ``pairs``), e.g. estimated on the full images
    when the pairs are crops. ``trace``: filled with the per-iteration losses and the affine
    PSNR / SSIM of every ``every``-th output, per pair, for replaying stopping rules."""
    import torch
    from napari_dip.core.fit import fit
    from evaluation import EvaluationStop  # benchmarks/, beside this script
    from napari_dip.core.task import build_problem
    from napari_dip.core.noise_domain import IntensityDomain, VstDomain
    from napari_dip.core.noise_stop import DiscrepancyStop, noise_levels
    models = models or [estimate_model(p) for p in pairs]
    domains = [VstDomain.of(p.noisy, m) if mode == "vst" else IntensityDomain(0.0, 255.0, m.rescaled(0.0, 255.0))
               for p, m in zip(pairs, models)]
    observed = torch.from_numpy(np.stack([d.to_fit(p.noisy)[None] for d, p in zip(domains, pairs)]))
    truth = torch.from_numpy(np.stack([d.to_fit(p.clean)[None] for d, p in zip(domains, pairs)]).astype(np.float32))
    cfg = replace(config, fit=replace(config.fit, preview_every=every))
    extra = {}
    if mode in ("vst-mse", "gaussian-nll"):
        from napari_dip.core.noise_losses import noise_loss
        extra["loss"] = noise_loss(mode, [d.model for d in domains])
    problem = build_problem(cfg, observed, seeds=[cfg.seed] * len(pairs), ground_truth=truth, **extra)
    rule = EvaluationStop(len(pairs), [cfg.stopping])
    levels = ([d.sigma ** 2 for d in domains] if mode == "vst" else
              noise_levels(observed, [d.model for d in domains]).tolist())
    residuals = _Residuals(rule, observed, DiscrepancyStop(observed, levels))
    gen = fit(problem, cfg.fit, residuals, device=torch.device("cpu"))
    best = [(-np.inf, 0.0, 0) for _ in pairs]
    scored: list = []
    start = time.perf_counter()
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if event.preview is not None:
            scored.append((event.iteration, []))
            for g, (d, p) in enumerate(zip(domains, pairs)):
                s = affine_score(d.back(event.preview[g, 0]), p.clean)
                scored[-1][1].append(s)
                if s[0] > best[g][0]:
                    best[g] = (*s, event.iteration)
    seconds = time.perf_counter() - start
    if trace is not None:
        trace.update(mode=mode, images=[p.name for p in pairs], models=[m.as_dict() for m in models],
                     fit_models=[d.model.as_dict() if getattr(d, "model", None) else None for d in domains],
                     vst_sigma=[getattr(d, "sigma", None) for d in domains],
                     loss=result.loss_curve.T.tolist(), residual=np.array(residuals.mse).T.tolist(), every=every, iterations=[it for it, _ in scored],
                     psnr=[[s[g][0] for _, s in scored] for g in range(len(pairs))],
                     ssim=[[s[g][1] for _, s in scored] for g in range(len(pairs))])
    auto = rule.autos[0]
    out, detected = auto.result()
    disc_out, disc_it = residuals.discrepancy.result()
    rows = []
    label = DIP_LABELS[mode]
    for g, (d, p, m) in enumerate(zip(domains, pairs, models)):
        settings = (f"{cfg.preset} preset, max {cfg.fit.iterations} it, seed {cfg.seed}, {cfg.fit.precision}, "
                    f"batch of {len(pairs)}" + ("" if mode == "gaussian" else f", estimated {_model_text(m)}"))
        end = int(auto.stopped_at[g]) or result.iterations
        base = {"experiment": "realnoise", "image": p.name, "kind": "fluorescence", "crop": crop_text,
                "degradation": "real (one frame)", "preset": cfg.preset, "architecture": cfg.architecture}
        rows.append({**base, "method": f"{label} oracle", "iterations": result.iterations,
                     "stop_iteration": best[g][2], "psnr": best[g][0], "ssim": best[g][1],
                     "seconds": seconds / len(pairs), "settings": settings + f", best affine PSNR every {every} it"})
        ap, aq = affine_score(d.back(out[g, 0].numpy()), p.clean)
        rows.append({**base, "method": f"{label} auto", "iterations": end, "stop_iteration": detected[g],
                     "psnr": ap, "ssim": aq, "seconds": seconds / len(pairs) * end / result.iterations,
                     "settings": settings + f", {_stop_text(cfg.stopping)}"})
        dp, dq = affine_score(d.back(disc_out[g, 0].numpy()), p.clean)
        rows.append({**base, "method": f"{label} discrepancy", "iterations": disc_it[g], "stop_iteration": disc_it[g],
                     "psnr": dp, "ssim": dq, "seconds": seconds / len(pairs) * disc_it[g] / result.iterations,
                     "settings": settings + f", discrepancy stop: residual (span {residuals.discrepancy.span}) at "
                                            f"{levels[g]:.4g} (the model's mean variance, fit units)"})
    return rows


class _Residuals:
    """The harness's rule plus the discrepancy stop (which never ends the fit here), recording
    the squared residual of the raw output to the observed image (fit units) per iteration."""

    needs_ground_truth = True

    def __init__(self, rule, observed, discrepancy):
        self.rule, self.observed, self.discrepancy, self.mse = rule, observed, discrepancy, []

    def observe(self, iteration, output, candidate, psnr, loss=None):
        y = self.observed.to(output)
        self.mse.append(((output.detach()[..., : y.shape[-2], : y.shape[-1]] - y) ** 2).flatten(1).mean(1).tolist())
        self.discrepancy.observe(iteration, output, candidate, psnr, loss)
        return self.rule.observe(iteration, output, candidate, psnr, loss)

    def result(self):
        return self.rule.result()


def isbi_panel(data: Path, out: Path, crop: int, config, section: int = 15) -> dict:
    """Before/after panel for an ISBI section's own noise (no ground truth): the centre crop,
    BM3D with the estimated model and DIP with ``noise='auto'``, side by side in one PNG."""
    import imageio.v3 as iio
    import tifffile
    from napari_dip.api import run
    from napari_dip.baselines import denoise_slice
    from napari_dip.core.fit import drain
    from napari_dip.core.noise_estimate import estimate_noise
    stack = tifffile.imread(data / "em" / "isbi2012_train_volume.tif")
    top = (stack.shape[1] - crop) // 2
    noisy = stack[section, top:top + crop, top:top + crop]
    model = estimate_noise(noisy.astype(np.float64)).model
    t = time.perf_counter()
    bm3d = denoise_slice(noisy, "vst-bm3d", model)
    bm3d_s = time.perf_counter() - t
    dip, report = drain(run(replace(config, noise=replace(config.noise, noise="auto")), noisy, device="cpu"))
    gap = np.full((crop, 8), 255, np.uint8)
    tiles = [noisy, np.clip(np.rint(bm3d), 0, 255).astype(np.uint8), np.clip(np.rint(dip), 0, 255).astype(np.uint8)]
    out.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out / "real_noise_isbi.png", np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], 1))
    record = report["slices"][0]
    return {"section": section, "crop": crop, "model": model.as_dict(), "bm3d_seconds": bm3d_s,
            "dip_stop_iteration": record["stop_iteration"], "dip_iterations": record["iterations"],
            "dip_seconds": record["seconds"], "dip_noise": record.get("noise")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["denoise", "superres"], choices=EXPERIMENTS)
    parser.add_argument("--crop", type=int, default=64, help="crop size in pixels (high-resolution size for SR)")
    parser.add_argument("--slices", type=int, default=2, help="ISBI slices to use (evenly spaced)")
    parser.add_argument("--iterations", type=int, help="maximum iterations per fit (default: the preset's)")
    parser.add_argument("--preset", default=None, help="DIP preset (default: the task's default)")
    parser.add_argument("--sigma", type=float, default=25, help="noise sigma in 8-bit units (default 25)")
    parser.add_argument("--factor", type=int, default=4, help="super-resolution factor (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="noise and network seed")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                        help="arithmetic of the fits (default fp32, so batch size does not change it)")
    parser.add_argument("--realnoise-rows", nargs="*", default=list(REALNOISE_MODES), choices=REALNOISE_MODES,
                        help="rows of the realnoise experiment: classical baselines and DIP variants (default: all)")
    parser.add_argument("--realnoise-crop", type=int, default=256,
                        help="centre crop of the DIP rows of realnoise (0: full 512x512; default 256)")
    parser.add_argument("--realnoise-pairs", nargs="*", metavar="NAME",
                        help="only these pairs in the DIP rows of realnoise (e.g. w2s-077_2 fmd-confocal-fish3; "
                             "default: all four)")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=Path("quality-results"), help="folder for CSV and markdown")
    args = parser.parse_args(argv)

    import torch
    from napari_dip.core.task import make_config
    torch.set_num_threads(1)
    sigma = args.sigma / 255
    start = time.perf_counter()
    rows: list[dict] = []
    crop_txt = f"{args.crop}x{args.crop}"
    want = set(args.experiments)
    if want & {"denoise", "architecture", "stopping"}:
        crops = denoise_crops(args.data, args.crop, args.slices)
        noisy = [add_noise(c.image, sigma, args.seed) for c in crops]
        clean = [c.image for c in crops]
        base = {"crop": crop_txt, "degradation": f"Gaussian sigma {args.sigma:g}/255"}
        config = make_config("denoise", preset=args.preset, iterations=args.iterations, seed=args.seed, precision=args.precision)
        grid = stopping_grid(config.stopping) if "stopping" in want else [config.stopping]
        if want & {"denoise", "stopping"}:
            records = run_dip(config, noisy, clean, grid)
            if "denoise" in want:
                for crop, y, x in zip(crops, noisy, clean):
                    rows += baseline_rows(crop, denoise_baselines(y, x, sigma), x, {**base, "experiment": "denoise"})
                rows += dip_rows(crops, config, records, {**base, "experiment": "denoise"})
            if "stopping" in want:
                for k in range(len(grid)):
                    rows += [r for r in dip_rows(crops, config, records,
                                                 {**base, "experiment": "stopping"}, auto_index=k)
                             if r["method"] == "DIP auto" or k == 0]
        if "architecture" in want:
            for arch in ("skip", "resunet"):
                cfg = make_config("denoise", preset=args.preset, iterations=args.iterations, seed=args.seed, precision=args.precision,
                                  architecture=arch)
                rows += dip_rows(crops, cfg, run_dip(cfg, noisy, clean),
                                 {**base, "experiment": "architecture"})
    if "presets" in want:
        crops = [c for c in denoise_crops(args.data, args.crop, 1) if c.kind in ("EM", "MRI")]
        noisy = [add_noise(c.image, sigma, args.seed) for c in crops]
        base = {"crop": crop_txt, "degradation": f"Gaussian sigma {args.sigma:g}/255", "experiment": "presets"}
        for preset in ("fast", "paper"):
            cfg = make_config("denoise", preset=preset, iterations=args.iterations, seed=args.seed, precision=args.precision)
            rows += dip_rows(crops, cfg, run_dip(cfg, noisy, [c.image for c in crops]), base)
    if "superres" in want:
        from napari_dip.core.operators import Downsample
        crops = superres_crops(args.data, args.crop, args.slices)
        op = Downsample(args.factor)
        low = [op(torch.from_numpy(c.image[None]))[0].clamp(0, 1).numpy() for c in crops]
        base = {"crop": f"{crop_txt} HR", "degradation": f"x{args.factor} Lanczos2", "experiment": "superres"}
        config = make_config("superres", preset=args.preset, factor=args.factor, iterations=args.iterations,
                             seed=args.seed, precision=args.precision)
        for crop, lr in zip(crops, low):
            t = time.perf_counter()
            rows += baseline_rows(crop, [("bicubic", "torch bicubic", bicubic(lr, args.factor),
                                          time.perf_counter() - t)], crop.image, base)
        rows += dip_rows(crops, config, run_dip(config, low, [c.image for c in crops]), base)
    if "realnoise" in want:
        crop = args.realnoise_crop or None
        if "classical" in args.realnoise_rows:
            rows += realnoise_classical(fluo_pairs(args.data), "512x512")
            if crop:
                rows += realnoise_classical(fluo_pairs(args.data, crop), f"{crop}x{crop} centre",
                                            fluo_pairs(args.data))
        config = make_config("denoise", preset=args.preset, iterations=args.iterations, seed=args.seed,
                             precision=args.precision)
        keep = [p.name in (args.realnoise_pairs or [p.name]) for p in fluo_pairs(args.data)]
        models = [estimate_model(p) for p, k in zip(fluo_pairs(args.data), keep) if k]  # the full images'
        for mode in [m for m in args.realnoise_rows if m != "classical"]:
            trace: dict = {}
            rows += realnoise_dip([p for p, k in zip(fluo_pairs(args.data, crop), keep) if k], mode, config,
                                  f"{crop}x{crop} centre" if crop else "512x512", models, trace=trace)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"trace_{mode}.json").write_text(json.dumps(trace))
    if "isbi-panel" in want:
        config = make_config("denoise", preset=args.preset, iterations=args.iterations, seed=args.seed,
                             precision=args.precision)
        info = isbi_panel(args.data, args.out, args.realnoise_crop or 512, config)
        print("isbi panel:", info)
    if "decoder" in want:
        rows += decoder_rows(mri_slices(args.data, args.slices), args.iterations or 5000, args.seed,
                             args.precision)
    total = time.perf_counter() - start
    write_outputs(args.out, rows, total, args)
    print(f"wrote {args.out / 'quality.csv'} and {args.out / 'quality.md'} in {total / 60:.1f} min")
    return 0


def summary(rows: list[dict]) -> list[str]:
    """Median auto-vs-oracle gap and auto vs non-local means on the denoising rows."""
    den = [r for r in rows if r["experiment"] == "denoise"]
    by = {(r["image"], r["method"]): r["psnr"] for r in den}
    images = sorted({r["image"] for r in den if r["method"] == "DIP auto"})
    if not images:
        return []
    gaps = [by[(i, "DIP oracle")] - by[(i, "DIP auto")] for i in images]
    auto = [by[(i, "DIP auto")] for i in images]
    nlm = [by[(i, "non-local means")] for i in images]
    lines = [f"- denoising, {len(images)} crops: median oracle - auto PSNR gap {statistics.median(gaps):.2f} dB "
             f"(max {max(gaps):.2f}); median auto PSNR {statistics.median(auto):.2f} dB vs non-local means "
             f"{statistics.median(nlm):.2f} dB; auto beats NLM on {sum(a > b for a, b in zip(auto, nlm))} of {len(images)}"]
    if any((i, "BM3D") in by for i in images):
        bm = [by[(i, "BM3D")] for i in images]
        lines.append(f"- median BM3D PSNR {statistics.median(bm):.2f} dB")
    return lines


def realnoise_summary(rows: list[dict]) -> list[str]:
    """Median affine-fitted PSNR per method and crop over the real-noise pairs (W2S alone too)."""
    lines = []
    rn = [r for r in rows if r["experiment"] == "realnoise"]
    for crop in dict.fromkeys(r["crop"] for r in rn):
        for method in dict.fromkeys(r["method"] for r in rn if r["crop"] == crop):
            part = [r for r in rn if r["crop"] == crop and r["method"] == method]
            w2s = [r["psnr"] for r in part if r["image"].startswith("w2s")]
            lines.append(f"- realnoise {crop}, {method}: median PSNR {statistics.median(r['psnr'] for r in part):.2f} dB "
                         f"over {len(part)} pairs" + (f", W2S median {statistics.median(w2s):.2f} dB" if w2s else ""))
    return lines


def write_outputs(out: Path, rows: list[dict], seconds: float, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "quality.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Quality harness results", "",
             f"Command: `python benchmarks/quality.py {' '.join(_argv_text(args))}`; total "
             f"{seconds / 60:.1f} min on this machine (1 torch thread).", ""]
    lines += summary(rows) + realnoise_summary(rows) + [""]
    for exp in EXPERIMENTS:
        part = [r for r in rows if r["experiment"] == exp]
        if not part:
            continue
        lines += [f"## {exp}", "", "| " + " | ".join(COLUMNS[1:]) + " |", "|" + "---|" * (len(COLUMNS) - 1)]
        for r in part:
            lines.append("| " + " | ".join(_cell(r[c]) for c in COLUMNS[1:]) + " |")
        lines.append("")
    (out / "quality.md").write_text("\n".join(lines))


def _argv_text(args) -> list[str]:
    real = (["--realnoise-crop", str(args.realnoise_crop), "--realnoise-rows", *args.realnoise_rows]
            + (["--realnoise-pairs", *args.realnoise_pairs] if args.realnoise_pairs else [])
            if set(args.experiments) & {"realnoise", "isbi-panel"} else [])
    return ["--experiments", *args.experiments, "--crop", str(args.crop), "--slices", str(args.slices)] + (
        ["--iterations", str(args.iterations)] if args.iterations else []) + real


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


if __name__ == "__main__":
    raise SystemExit(main())
