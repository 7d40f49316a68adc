"""Image quality metrics on batches (G, C, H, W) of images in [0, 1]; one value per image."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image (as skimage.metrics.peak_signal_noise_ratio)."""
    mse = ((x.float() - ref.float()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse.clamp_min(1e-20))


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, win_size: int = 7) -> torch.Tensor:
    """Structural similarity per image, averaged over channels.

    Matches ``skimage.metrics.structural_similarity`` with its defaults (7x7 uniform window,
    sample covariance, K1 = 0.01, K2 = 0.03, the border of half a window left out).
    """
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size} pixels, "
                         f"got {tuple(x.shape[-2:])}")
    g, c, h, w = x.shape
    a = x.double().reshape(g * c, 1, h, w)
    b = ref.double().reshape(g * c, 1, h, w)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, win_size, stride=1)

    n = win_size ** 2
    cov_norm = n / (n - 1)
    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.reshape(g, c, -1).mean(dim=(1, 2)).float()
