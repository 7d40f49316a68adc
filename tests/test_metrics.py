"""PSNR and SSIM agree with scikit-image."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_dip.core.metrics import psnr, ssim


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 40, 57), (2, 7, 9)])
@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_metrics_match_scikit_image(shape, noise):
    rng = np.random.default_rng(1)
    ref = rng.random(shape)
    x = np.clip(ref + noise * rng.standard_normal(shape), 0, 1)
    p = float(psnr(torch.tensor(x)[None], torch.tensor(ref)[None])[0])
    s = float(ssim(torch.tensor(x)[None], torch.tensor(ref)[None])[0])
    assert p == pytest.approx(peak_signal_noise_ratio(ref, x, data_range=1), abs=0.01)
    assert s == pytest.approx(structural_similarity(ref, x, data_range=1, channel_axis=0), abs=0.001)


def test_metrics_are_per_image_in_a_batch():
    ref = torch.rand(3, 1, 16, 16)
    x = ref.clone()
    x[1] += 0.1
    p = psnr(x.clamp(0, 1), ref)
    assert p.shape == (3,) and p[0] > 100 and p[1] < 30
    assert ssim(x, ref).shape == (3,)


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5))
