"""Sample data for napari: small images shipped in ``napari_dip/data`` (see data/README.md)."""
from __future__ import annotations

from importlib.resources import files

import numpy as np

NOISE_SEED = 0


def _path(name: str):
    return files("napari_dip") / "data" / name


def _noisy(clean: np.ndarray, sigma: float, peak: float) -> np.ndarray:
    """``clean`` plus Gaussian noise of standard deviation ``sigma * peak``, clipped to 0..peak."""
    rng = np.random.default_rng(NOISE_SEED)
    return np.clip(clean + rng.normal(0.0, sigma * peak, clean.shape), 0, peak)


def f16_noisy():
    """The 128x128 F16 crop with Gaussian noise (sigma 25/255), and the clean crop as ground truth."""
    import imageio.v3 as iio

    clean = iio.imread(_path("f16_crop.png"))
    noisy = np.rint(_noisy(clean.astype(np.float32), 25 / 255, 255.0)).astype(np.uint8)
    return [
        (noisy, {"name": "F16", "rgb": True}, "image"),
        (clean, {"name": "F16 clean", "rgb": True, "visible": False}, "image"),
    ]


def mri_slices():
    """Five axial slices of a T1 brain MRI (0.8 mm voxels) with Gaussian noise (5% of the peak)."""
    import tifffile

    clean = tifffile.imread(_path("mri_t1_slices.tif")).astype(np.float32)
    peak = float(clean.max())
    noisy = _noisy(clean, 0.05, peak).astype(np.float32)
    common = {"scale": (0.8, 0.8, 0.8), "units": ("mm", "mm", "mm"),
              "axis_labels": ("S", "A", "R"), "contrast_limits": (0.0, peak)}
    return [
        (noisy, {"name": "T1 MRI", **common}, "image"),
        (clean, {"name": "T1 MRI clean", "visible": False, **common}, "image"),
    ]
