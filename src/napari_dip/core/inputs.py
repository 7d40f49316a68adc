"""Fixed random codes z fed to the networks."""
from __future__ import annotations

import torch

CODES = ("uniform", "meshgrid")


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


def make_code(kind: str, channels: int, height: int, width: int, *,
              generator: torch.Generator) -> torch.Tensor:
    """A code of the named kind, shape (channels, H, W) (meshgrid always has 2 channels)."""
    if kind == "uniform":
        return uniform_code(channels, height, width, generator=generator)
    if kind == "meshgrid":
        return meshgrid_code(height, width)
    raise ValueError(f"unknown code {kind!r}; choose one of {', '.join(CODES)}")
