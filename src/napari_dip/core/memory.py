"""How much memory a fit needs, and the tile and batch sizes that fit a memory budget.

The model builds on :func:`napari_dip.core.fit.problem_bytes` (fp32 weights x 4 and the
activations saved for the backward pass, counted on the meta device) and scales it by factors
measured on this project's CPU machine: the peak resident memory of a fit over the process's
memory before it (tests/test_memory.py checks a fresh measurement against the model; the
measurements are in docs/speed.md, "Full size"). Backward-pass temporaries make the peak
larger than the saved activations for small images; bf16 autocast keeps activations in half
the bytes. The factors are upper envelopes of what was measured (64 to 1024 pixels a side),
so the estimate errs on the large side.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .fit import problem_bytes, resolve_precision

PEAK_PER_PROBLEM = {"fp32": 1.8, "bf16": 1.35}
"""Measured peak / :func:`problem_bytes` of one problem (the largest ratio seen, 128x128: smaller
fits carry more backward temporaries per saved byte; 1.15 and 0.69 at 1024x1024)."""
RAM_SHARE = 0.5  # default budget: this share of the available RAM ...
VRAM_SHARE = 0.8  # ... or of the free GPU memory
TILE_SIDES = (4096, 3072, 2048, 1536, 1024, 768, 512, 384, 256, 192, 128, 96, 64)
"""Tile sides the planner tries, largest first (each rounded up to a size the network accepts)."""
_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "kb": 2 ** 10, "m": 2 ** 20, "mb": 2 ** 20, "g": 2 ** 30, "gb": 2 ** 30,
          "t": 2 ** 40, "tb": 2 ** 40, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


def parse_bytes(value) -> int:
    """Bytes from an int or a string like '4GB', '512 MB', '1.5g' (binary units: 1 GB = 2**30)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"max_memory must be positive, got {value!r}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"max_memory must be a size like 4GB, 512MB or a number of bytes, got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 2 ** 30), ("MB", 2 ** 20), ("kB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def default_budget(device: torch.device) -> int:
    """A safe share of the free memory: :data:`VRAM_SHARE` of the GPU's, else :data:`RAM_SHARE` of the RAM."""
    if device.type == "cuda":
        return int(VRAM_SHARE * torch.cuda.mem_get_info(device)[0])
    import psutil
    return int(RAM_SHARE * psutil.virtual_memory().available)


def fit_bytes(network, channels: int, size: tuple[int, int], *, problems: int = 1,
              precision: str = "fp32") -> int:
    """Bytes a fit of ``problems`` problems of output ``size`` (H, W) needs at its peak.

    ``network``: a network config (``build``, ``code_shape``); ``precision``: 'fp32' or
    'bf16' (the resolved one). The one public estimate: the planner and the CLI's checks use it.
    """
    per = problem_bytes(lambda: network.build(channels, 1), network.code_shape(*size))
    return int(math.ceil(PEAK_PER_PROBLEM[precision] * per * problems))


@dataclass(frozen=True)
class Plan:
    """What will run: ``tile`` (th, tw) output tile size, or None for the whole image."""

    tile: tuple[int, int] | None
    batch_size: int
    bytes_per_problem: int
    budget: int
    precision: str

    @property
    def estimated_bytes(self) -> int:
        return self.bytes_per_problem * self.batch_size


def plan(shape: tuple[int, int], network, *, channels: int = 1, factor: int = 1, device: torch.device,
         max_memory=None, tile_size: int | None = None, precision: str = "auto",
         max_batch: int | None = None) -> Plan:
    """Tile and batch sizes for an image whose fitted (padded, output) size is ``shape``.

    The whole image when one problem of it fits ``max_memory`` (default
    :func:`default_budget`), else the largest tile of :data:`TILE_SIDES` that fits;
    ``tile_size`` forces a tile side (rounded up to a size the network accepts). The batch is
    as many problems as the budget holds, at most ``max_batch``. Raises a ValueError naming
    the bytes needed and the fix when not even one tile fits.
    """
    budget = default_budget(device) if max_memory is None else parse_bytes(max_memory)

    def need(h: int, w: int) -> tuple[int, str]:
        amp = resolve_precision(precision, device, pixels=h * w)
        prec = "fp32" if amp is None else "bf16"
        return fit_bytes(network, channels, (h, w), precision=prec), prec

    def accepted(side: int) -> int:
        # The smallest side >= side the network accepts whose low-resolution side is whole.
        while True:
            m = network.padded_size(side, side)[0]
            if m % factor == 0:
                return m
            side = m + 1

    h, w = shape
    if tile_size is not None:
        if not isinstance(tile_size, int) or tile_size < 1:
            raise ValueError(f"tile_size must be a positive integer, got {tile_size!r}")
        side = accepted(int(tile_size))
        tile = None if side >= h and side >= w else (min(side, accepted(h)), min(side, accepted(w)))
        options = [tile]
    else:
        # Tiles no longer than the image along either axis (``shape`` is a size the network accepts).
        options = [None] + [(min(s, h), min(s, w)) for s in sorted({accepted(s) for s in TILE_SIDES}, reverse=True)
                            if s < max(h, w)]
    for tile in options:
        th, tw = (h, w) if tile is None else tile
        per, prec = need(th, tw)
        if per <= budget:
            batch = max(1, budget // per)
            if max_batch is not None:
                batch = max(1, min(batch, max_batch))
            return Plan(tile, int(batch), per, budget, prec)
    th, tw = (h, w) if tile is None else tile
    fix = ("raise --max-memory (max_memory) to at least " + format_bytes(per)
           + (" or choose a smaller --tile-size" if tile_size is not None else ""))
    raise ValueError(f"one tile of {th}x{tw} pixels needs about {format_bytes(per)} but the memory budget is "
                     f"{format_bytes(budget)}; {fix}")
