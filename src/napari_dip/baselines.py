"""Classical denoisers with the same noise model as the Deep Image Prior fits, for comparison.

- ``nlm``: scikit-image's non-local means (patch 5, distance 6, h = 0.8 sigma);
- ``vst-bm3d``: BM3D (the ``bm3d`` package, optional extra ``baselines``).

Under a Gaussian model they run on the image with its sigma; under a Poisson-Gaussian or
Poisson model they run in the generalised-Anscombe domain (unit noise) and come back by the
exact unbiased inverse (:mod:`napari_dip.core.noise_vst`). The model is estimated per slice
(:func:`~napari_dip.core.noise_estimate.estimate_noise`) unless given.
"""
from __future__ import annotations

import time

import numpy as np

from .arrays import as_slices, check_image, from_slices, layout_of
from .core.noise import NOISE_CHOICES, NoiseModel, model_from_params
from .core.noise_domain import VstDomain
from .core.noise_estimate import estimate_noise

BASELINES = ("vst-bm3d", "nlm")
BM3D_MISSING = ("the vst-bm3d baseline needs the bm3d package: pip install 'napari-dip[baselines]' "
                "(or pip install bm3d), or use --method nlm")


def require_bm3d():
    """The ``bm3d`` module, or one ImportError naming the fix."""
    try:
        import bm3d
    except ImportError:
        raise ImportError(BM3D_MISSING) from None
    return bm3d


def require_skimage():
    """scikit-image's restoration module, or one ImportError naming the fix."""
    try:
        from skimage import restoration
    except ImportError:
        raise ImportError("the nlm baseline needs scikit-image: pip install 'napari-dip[baselines]'") from None
    return restoration


def _nlm(z: np.ndarray, sigma: float) -> np.ndarray:
    denoise_nl_means = require_skimage().denoise_nl_means
    return denoise_nl_means(z, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)


def _bm3d(z: np.ndarray, sigma: float) -> np.ndarray:
    return require_bm3d().bm3d(z, sigma_psd=sigma)


def denoise_slice(image: np.ndarray, method: str, model: NoiseModel) -> np.ndarray:
    """One 2D image in its own units, denoised by ``method`` under ``model`` (float32)."""
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; choose one of {', '.join(BASELINES)}")
    if model.kind == "rician":
        raise ValueError("the baselines support gaussian, poisson and poisson-gaussian noise, not rician")
    denoiser = _bm3d if method == "vst-bm3d" else _nlm
    z = np.asarray(image, np.float64)
    if model.kind == "gaussian":
        return denoiser(z, model.sigma).astype(np.float32)
    domain = VstDomain.of(z, model)
    return domain.back(denoiser(domain.to_fit(z).astype(np.float64), domain.sigma))


def denoise_baseline(image, method: str = "vst-bm3d", *, noise: str = "auto",
                     noise_params: tuple[float, float] | None = None,
                     channel_axis: int | None = None, on_slice=None,
                     cancel=None) -> tuple[np.ndarray, dict]:
    """Denoise every 2D slice (and channel) of ``image``; (float32 output, report).

    ``noise``: a model name or ``auto`` (chosen per slice); ``noise_params``: ``(a, b)`` of
    ``var = a x + b`` in the image's units, used for every slice instead of an estimate.
    The report gives each slice's model (kind, a, b) and the statistics it was fitted to.
    ``on_slice(index, count, output, records)``: called after each slice with its (C, H, W)
    output and its channels' records (the widget's progress); ``cancel()``: True ends the run
    after the current slice (the report says ``partial``; slices not reached stay 0).
    """
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; choose one of {', '.join(BASELINES)}")
    if noise not in NOISE_CHOICES:
        raise ValueError(f"unknown noise model {noise!r}; choose one of {', '.join(NOISE_CHOICES)}")
    require_bm3d() if method == "vst-bm3d" else require_skimage()  # before any work
    image = check_image(image, "image", channel_axis)
    layout = layout_of(image, channel_axis)
    given = None if noise_params is None else model_from_params(noise, *noise_params)
    src = as_slices(image, layout)
    out = np.zeros(src.shape, np.float32)
    records = []
    start = time.perf_counter()
    cancelled = False
    for i in range(src.shape[0]):
        if cancel is not None and cancel():
            cancelled = True
            break
        for c in range(src.shape[1]):
            record = {"slice": i, "channel": c, "noise_source": "given" if given else "estimated"}
            if given:
                model = given
            else:
                estimate = estimate_noise(src[i, c], noise)
                model = estimate.model
                record["noise_levels"] = {"means": estimate.means.round(6).tolist(),
                                          "variances": estimate.variances.round(6).tolist()}
            out[i, c] = denoise_slice(src[i, c], method, model)
            records.append({**record, "noise": model.as_dict()})
        if on_slice is not None:
            on_slice(i, src.shape[0], out[i], records[-src.shape[1]:])
    report = {"method": method, "noise": noise, "input_shape": list(image.shape), "slices": records,
              "seconds": time.perf_counter() - start, "cancelled": cancelled, "partial": cancelled}
    return from_slices(out, layout), report
