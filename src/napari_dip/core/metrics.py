"""Image quality metrics on batches (G, C, H, W) of images in [0, 1]; one value per image."""
from __future__ import annotations

import itertools

import numpy as np
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


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)[None, None]


def ms_ssim_min_size(scales: int = 5, win_size: int = 11) -> int:
    """The smallest side MS-SSIM accepts: the window must fit at the coarsest scale."""
    return win_size * 2 ** (scales - 1)


def ms_ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS, win_size: int = 11,
            sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) per image, averaged over channels.

    One scale per weight (default 5, the paper's weights), 11x11 Gaussian windows with
    sigma 1.5 and no padding, 2x2 average pooling between scales; negative contrast terms
    are clipped at 0. Raises ValueError for images smaller than :func:`ms_ssim_min_size`.
    """
    need = ms_ssim_min_size(len(weights), win_size)
    if min(x.shape[-2:]) < need:
        raise ValueError(f"MS-SSIM with {len(weights)} scales needs images of at least {need}x{need} "
                         f"pixels, got {tuple(x.shape[-2:])}")
    g, c, h, w = x.shape
    a = x.double().reshape(g * c, 1, h, w)
    b = ref.double().reshape(g * c, 1, h, w)
    win = _gaussian_window(win_size, sigma).to(a.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    result = torch.ones(g * c, dtype=torch.float64, device=a.device)
    for i, wt in enumerate(weights):
        ux, uy = F.conv2d(a, win), F.conv2d(b, win)
        vx = F.conv2d(a * a, win) - ux ** 2
        vy = F.conv2d(b * b, win) - uy ** 2
        vxy = F.conv2d(a * b, win) - ux * uy
        cs = ((2 * vxy + c2) / (vx + vy + c2)).flatten(1).mean(1)
        if i == len(weights) - 1:
            lum = ((2 * ux * uy + c1) / (ux ** 2 + uy ** 2 + c1)).flatten(1)
            term = (lum * ((2 * vxy + c2) / (vx + vy + c2)).flatten(1)).mean(1)
        else:
            term = cs
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        result = result * term.clamp_min(0) ** wt
    return result.reshape(g, c).mean(1).float()


VIF_SCALES = 4


def vif_min_size() -> int:
    """The smallest side the 4-scale pixel-domain VIF accepts."""
    need = _vif_window(VIF_SCALES)
    for scale in range(VIF_SCALES, 1, -1):  # undo the subsampling and the valid filter
        need = max(2 * need - 1 + _vif_window(scale) - 1, _vif_window(scale - 1))
    return need


def _vif_window(scale: int) -> int:
    return 2 ** (VIF_SCALES - scale + 1) + 1


def vif(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, noise_var: float = 2.0) -> torch.Tensor:
    """Pixel-domain visual information fidelity (VIFp, Sheikh & Bovik 2006), 4 scales.

    ``x`` is the distorted image, ``ref`` the reference; both are rescaled to 0..255 first
    (``noise_var`` = 2 is the HVS noise variance on that scale). Scale j (1..4) uses an
    N x N Gaussian window, N = 2^(5-j) + 1, sd N/5; coarser scales are filtered with their
    window and subsampled by 2. 1 for identical images, lower when information is lost.
    Raises ValueError for images smaller than :func:`vif_min_size`.
    """
    need = vif_min_size()
    if min(x.shape[-2:]) < need:
        raise ValueError(f"VIF needs images of at least {need}x{need} pixels, got {tuple(x.shape[-2:])}")
    g, c, h, w = x.shape
    d = x.double().reshape(g * c, 1, h, w) * (255.0 / data_range)
    r = ref.double().reshape(g * c, 1, h, w) * (255.0 / data_range)
    eps = 1e-10
    num = torch.zeros(g * c, dtype=torch.float64, device=d.device)
    den = torch.zeros_like(num)
    for scale in range(1, VIF_SCALES + 1):
        n = _vif_window(scale)
        win = _gaussian_window(n, n / 5).to(d.device)
        if scale > 1:
            r = F.conv2d(r, win)[..., ::2, ::2]
            d = F.conv2d(d, win)[..., ::2, ::2]
        mu1, mu2 = F.conv2d(r, win), F.conv2d(d, win)
        s1 = (F.conv2d(r * r, win) - mu1 ** 2).clamp_min(0)
        s2 = (F.conv2d(d * d, win) - mu2 ** 2).clamp_min(0)
        s12 = F.conv2d(r * d, win) - mu1 * mu2
        gain = s12 / (s1 + eps)
        sv = s2 - gain * s12
        flat1 = s1 < eps
        gain = torch.where(flat1, 0.0, gain)
        sv = torch.where(flat1, s2, sv)
        s1 = torch.where(flat1, 0.0, s1)
        flat2 = s2 < eps
        gain = torch.where(flat2, 0.0, gain)
        sv = torch.where(flat2, 0.0, sv)
        sv = torch.where(gain < 0, s2, sv)
        gain = gain.clamp_min(0)
        sv = sv.clamp_min(eps)
        num += torch.log10(1 + gain ** 2 * s1 / (sv + noise_var)).flatten(1).sum(1)
        den += torch.log10(1 + s1 / noise_var).flatten(1).sum(1)
    return (num / den.clamp_min(eps)).reshape(g, c).mean(1).float()


# Summaries of the Deep Decoder's ensembles and patch fits (napari_dip.decoder, the sweep).
UNSTABLE_CV = 5.0  # percent: the report's criterion


def quality(x: np.ndarray, ref: np.ndarray) -> dict:
    """PSNR, SSIM, MS-SSIM and VIF of x (C, H, W) against ref in [0, 1].

    A metric the image is too small for is None, with the reason in ``notes``.
    """
    a, b = torch.from_numpy(np.ascontiguousarray(x[None])), torch.from_numpy(np.ascontiguousarray(ref[None]))
    out: dict = {"psnr": float(psnr(a, b)[0])}
    notes = []
    for name, fn in (("ssim", ssim), ("ms_ssim", ms_ssim), ("vif", vif)):
        try:
            out[name] = float(fn(a, b)[0])
        except ValueError as err:
            out[name] = None
            notes.append(str(err))
    if notes:
        out["notes"] = notes
    return out


def stability(psnrs: list[float]) -> dict:
    """Coefficient of variation of PSNR across members, CV% = 100 std / mean (population std).

    Above 5% the run is flagged unstable (the report's criterion).
    """
    cv = 100.0 * float(np.std(psnrs)) / float(np.mean(psnrs))
    return {"cv_percent": cv, "unstable": cv > UNSTABLE_CV}


def mean_pairwise_psnr(members: np.ndarray) -> float:
    """Mean PSNR over all pairs of members (N, C, H, W) in [0, 1]."""
    pairs = list(itertools.combinations(range(len(members)), 2))
    t = torch.from_numpy(members)
    return float(np.mean([float(psnr(t[i:i + 1], t[j:j + 1])[0]) for i, j in pairs]))
