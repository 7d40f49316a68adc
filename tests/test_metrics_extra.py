"""MS-SSIM and VIF: identities, monotonicity, and clear errors on small images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_dip.core.metrics import ms_ssim, ms_ssim_min_size, ssim, vif, vif_min_size
from napari_dip.core.metrics import quality

MRI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mri" / "niimath_T1.nii.gz"


@pytest.fixture(scope="module")
def mri_slice() -> np.ndarray:
    """The axial middle slice of the T1 volume, scaled to [0, 1] by its own min and max."""
    import nibabel

    vol = np.asarray(nibabel.load(str(MRI)).dataobj, dtype=np.float32)
    s = vol[:, :, vol.shape[2] // 2]
    return (s - s.min()) / (s.max() - s.min())


def smooth_image(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 6, n), torch.linspace(0, 6, n), indexing="ij")
    base = 0.5 + 0.25 * torch.sin(x) * torch.cos(y) + 0.1 * torch.rand(n, n, generator=g)
    return base[None, None].clamp(0, 1)


def noisy(x, sigma, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_min_sizes():
    assert ms_ssim_min_size() == 176 and ms_ssim_min_size(4) == 88
    assert vif_min_size() == 41


def test_ms_ssim_identity_monotone_and_single_scale_reduces_to_gaussian_ssim():
    x = smooth_image(96)
    assert float(ms_ssim(x, x, weights=(0.5, 0.5, 1.0))[0]) == pytest.approx(1.0)
    values = [float(ms_ssim(noisy(x, s), x, weights=(0.2, 0.3, 0.5))[0]) for s in (0.02, 0.05, 0.15)]
    assert values[0] > values[1] > values[2] > 0
    # one scale = SSIM with an 11x11 Gaussian window (population statistics)
    y = noisy(x, 0.05)
    one = float(ms_ssim(y, x, weights=(1.0,))[0])
    assert 0.3 < one < 1 and abs(one - float(ssim(y, x)[0])) < 0.1


def test_ms_ssim_batches_and_channels():
    x = torch.cat([smooth_image(96, 0), smooth_image(96, 1)]).repeat(1, 3, 1, 1)
    y = torch.cat([x[:1], noisy(x[1:], 0.1)])
    out = ms_ssim(y, x, weights=(0.3, 0.3, 0.4))
    assert out.shape == (2,) and out[0] == pytest.approx(1.0) and out[1] < 0.9


def test_vif_identity_noise_and_contrast():
    x = smooth_image(64)
    assert float(vif(x, x)[0]) == pytest.approx(1.0, abs=1e-6)
    light, heavy = float(vif(noisy(x, 0.02), x)[0]), float(vif(noisy(x, 0.1), x)[0])
    assert 1 > light > heavy > 0
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert float(vif(blurred, x)[0]) < 1
    stretched = (0.5 + 1.2 * (x - 0.5))  # contrast enhancement without clipping adds information
    assert float(vif(stretched, x)[0]) > 1


def test_too_small_images_give_a_clear_message():
    x = smooth_image(40)
    with pytest.raises(ValueError, match="MS-SSIM with 5 scales needs images of at least 176x176"):
        ms_ssim(x, x)
    with pytest.raises(ValueError, match="VIF needs images of at least 41x41"):
        vif(x, x)
    q = quality(x[0].numpy(), x[0].numpy())
    assert q["psnr"] > 100 and q["ssim"] == pytest.approx(1.0)
    assert q["ms_ssim"] is None and q["vif"] is None
    assert any("MS-SSIM" in n for n in q["notes"]) and any("VIF" in n for n in q["notes"])


@pytest.mark.slow
def test_full_size_metrics_on_a_real_mri_slice(mri_slice):
    ref = torch.from_numpy(mri_slice[None, None])
    deg = noisy(ref, 0.05)
    assert 0.5 < float(ms_ssim(deg, ref)[0]) < 1
    assert 0 < float(vif(deg, ref)[0]) < 1
    assert np.isfinite(float(ms_ssim(ref, ref)[0]))
