"""Forward operators A that map a restored image to what was observed.

All act on tensors of shape (G, C, H, W): G independent problems with C channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_FACTOR, MAX_FACTOR = 2, 32


class Identity:
    """A = I (denoising, Deep Decoder fitting)."""

    scale = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    adjoint = __call__

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def to(self, device: torch.device) -> "Identity":
        return self

    def rows(self, index: torch.Tensor) -> "Identity":
        """The operator of problems ``index`` (the same: it holds nothing per problem)."""
        return self


def lanczos_kernel(factor: int, support: int = 2) -> torch.Tensor:
    """The separable Lanczos-``support`` kernel of DIP's downsampler (phase 1/2), 4*factor taps.

    Returns a normalised 2D kernel of shape (4*factor, 4*factor).
    """
    size = 2 * support * factor
    centre = (size + 1) / 2 + 0.5  # the half-pixel phase of the paper's kernel
    d = torch.abs(torch.arange(1, size + 1, dtype=torch.float64) + 0.5 - centre) / factor
    taps = torch.where(d == 0, torch.ones_like(d),
                       support * torch.sin(math.pi * d) * torch.sin(math.pi * d / support)
                       / (math.pi ** 2 * d ** 2).clamp_min(1e-30))
    taps = taps * (d < support)
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum()).float()


class Downsample:
    """Anti-aliased downsampling by an integer factor with a Lanczos2 kernel.

    The input is padded by replication so that (H, W) maps to (H / f, W / f) exactly; a
    constant image stays constant.
    """

    def __init__(self, factor: int, device: torch.device | str = "cpu"):
        if not isinstance(factor, int) or not MIN_FACTOR <= factor <= MAX_FACTOR:
            raise ValueError(f"factor must be an integer from {MIN_FACTOR} to {MAX_FACTOR}, "
                             f"got {factor!r}")
        self.scale = factor
        self.kernel = lanczos_kernel(factor).to(device)
        k = self.kernel.shape[-1]
        lo = (k - factor) // 2
        self.padding = (lo, k - factor - lo, lo, k - factor - lo)

    def to(self, device: torch.device) -> "Downsample":
        self.kernel = self.kernel.to(device)
        return self

    def rows(self, index: torch.Tensor) -> "Downsample":
        """The operator of problems ``index`` (the same for every problem)."""
        return self

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if height % self.scale or width % self.scale:
            raise ValueError(f"image size {height}x{width} is not a multiple of the factor "
                             f"{self.scale}")
        return height // self.scale, width // self.scale

    def _weight(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel.to(x.dtype)[None, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.output_size(*x.shape[-2:])
        g, c, h, w = x.shape
        flat = F.pad(x.reshape(g * c, 1, h, w), self.padding, mode="replicate")
        y = F.conv2d(flat, self._weight(x), stride=self.scale)
        return y.reshape(g, c, h // self.scale, w // self.scale)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The exact adjoint A^T y (a vector-Jacobian product of the linear map)."""
        g, c, h, w = y.shape
        x = torch.zeros(g, c, h * self.scale, w * self.scale, dtype=y.dtype, device=y.device)
        return torch.autograd.functional.vjp(self, x, y)[1]


class Mask:
    """A = multiplication by a binary mask (1 = observed, 0 = missing), for inpainting."""

    scale = 1

    def __init__(self, mask: torch.Tensor):
        if mask.ndim != 4:
            raise ValueError(f"mask must have shape (G, C or 1, H, W), got {tuple(mask.shape)}")
        self.mask = (mask > 0.5).to(torch.float32)

    def to(self, device: torch.device) -> "Mask":
        self.mask = self.mask.to(device)
        return self

    def rows(self, index: torch.Tensor) -> "Mask":
        """The operator of problems ``index`` (a mask shared by all problems stays shared)."""
        return self if self.mask.shape[0] == 1 else Mask(self.mask[index.to(self.mask.device)])

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if (height, width) != tuple(self.mask.shape[-2:]):
            raise ValueError(f"mask is {tuple(self.mask.shape[-2:])} but the image is "
                             f"{(height, width)}")
        return height, width

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x.dtype)

    adjoint = __call__
