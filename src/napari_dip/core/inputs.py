"""Fixed random codes z fed to the networks.

Kinds for :func:`make_code`:

- ``uniform``: uniform noise in [0, 0.1) (Deep Image Prior's code);
- ``uniform01``: uniform noise in [0, 1) (the Deep Decoder's code, the report's "Blur = 0");
- ``blurred``: ``uniform01`` blurred by a 3x3 Gaussian with sigma 0.8 (what OpenCV picks
  for a 3x3 kernel: 0.3 ((3 - 1) 0.5 - 1) + 0.8), reflected borders ("Blur = 3");
- ``perlin``: 2D Perlin gradient noise mapped to [0, 1] with lattice spacing
  ``feature_size`` code pixels, independent per channel;
- ``meshgrid``: two channels holding x and y in [0, 1].

Adding ``-3d`` to ``uniform01``, ``blurred`` or ``perlin`` makes a "3D" code whose channels
vary smoothly: channel c is ``(1 - t) A + t B`` with t = c / (k - 1) for two noise images A
and B of the kind; for ``perlin-3d`` the channels are slices of one 3D Perlin volume (the
channel index is the third coordinate, with the same feature size).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BASE_CODES = ("uniform", "uniform01", "blurred", "perlin", "meshgrid")
CODES_3D = ("uniform01-3d", "blurred-3d", "perlin-3d")
CODES = BASE_CODES + CODES_3D
DEFAULT_FEATURE_SIZE = 4.0


def uniform_code(channels: int, height: int, width: int, *, generator: torch.Generator,
                 scale: float = 0.1) -> torch.Tensor:
    """Uniform noise in [0, scale) of shape (channels, H, W); DIP uses scale 0.1."""
    return torch.rand(channels, height, width, generator=generator) * scale


def meshgrid_code(height: int, width: int) -> torch.Tensor:
    """Two channels holding the x and y coordinates in [0, 1]."""
    ys = torch.linspace(0, 1, height)
    xs = torch.linspace(0, 1, width)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])


def gaussian_blur3(x: torch.Tensor, sigma: float = 0.8) -> torch.Tensor:
    """Blur every channel of (C, H, W) with a normalised 3x3 Gaussian, reflected borders."""
    taps = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / (2 * sigma ** 2))
    taps = taps / taps.sum()
    kernel = torch.outer(taps, taps)[None, None]
    mode = "reflect" if min(x.shape[-2:]) > 1 else "replicate"
    padded = F.pad(x[:, None], (1, 1, 1, 1), mode=mode)
    return F.conv2d(padded, kernel)[:, 0]


def _fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin(shape: tuple[int, ...], feature_size: float, *, generator: torch.Generator,
           batch: int = 1) -> torch.Tensor:
    """Perlin gradient noise of ``shape`` (2 or 3 axes), ``batch`` independent fields, in [0, 1].

    Random unit gradients sit on a lattice with spacing ``feature_size`` pixels; each pixel
    blends the 2^d corner dot products with the quintic fade curve. Fully vectorised.
    """
    if not feature_size > 0:
        raise ValueError(f"feature_size must be positive, got {feature_size!r}")
    d = len(shape)
    cells = [int(n / feature_size) + 2 for n in shape]
    grads = torch.randn(batch, *cells, d, generator=generator)
    grads = grads / grads.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) / feature_size for n in shape],
                            indexing="ij")
    base = [c.floor().long() for c in coords]
    frac = [c - b.float() for c, b in zip(coords, base)]
    out = torch.zeros(batch, *shape)
    for corner in range(2 ** d):
        bits = [(corner >> a) & 1 for a in range(d)]
        g = grads[(slice(None), *[b + bit for b, bit in zip(base, bits)])]  # (batch, *shape, d)
        offset = torch.stack([f - bit for f, bit in zip(frac, bits)], dim=-1)
        weight = math.prod(_fade(f) if bit else 1 - _fade(f) for f, bit in zip(frac, bits))
        out += weight * (g * offset).sum(-1)
    return (out * math.sqrt(4 / d) + 1) / 2  # the extremes of d-dimensional Perlin are +-sqrt(d/4)


def _noise(kind: str, n: int, height: int, width: int, generator: torch.Generator,
           feature_size: float) -> torch.Tensor:
    if kind == "uniform01":
        return uniform_code(n, height, width, generator=generator, scale=1.0)
    if kind == "blurred":
        return gaussian_blur3(uniform_code(n, height, width, generator=generator, scale=1.0))
    return perlin((height, width), feature_size, generator=generator, batch=n)


def make_code(kind: str, channels: int, height: int, width: int, *, generator: torch.Generator,
              feature_size: float = DEFAULT_FEATURE_SIZE) -> torch.Tensor:
    """A code of the named kind (see the module docstring), shape (channels, H, W).

    ``meshgrid`` always has 2 channels; ``feature_size`` is used by the Perlin kinds only.
    """
    if kind == "uniform":
        return uniform_code(channels, height, width, generator=generator)
    if kind == "meshgrid":
        return meshgrid_code(height, width)
    if kind in ("uniform01", "blurred", "perlin"):
        return _noise(kind, channels, height, width, generator, feature_size)
    if kind == "perlin-3d":
        return perlin((channels, height, width), feature_size, generator=generator)[0]
    if kind in CODES_3D:
        ends = _noise(kind[:-3], 2, height, width, generator, feature_size)
        t = torch.linspace(0, 1, channels)[:, None, None] if channels > 1 else torch.zeros(1, 1, 1)
        return (1 - t) * ends[0] + t * ends[1]
    raise ValueError(f"unknown code {kind!r}; choose one of {', '.join(CODES)}")
