"""Large slices as tile problems: cut the inputs and the code like the image, blend the outputs back.

:func:`napari_dip.api.run` fits the tiles of its slices with the batch machinery it uses for
slices (packed networks, parallel groups, per-problem stopping, warm starts); this module holds
what is particular to tiles: the grids (:mod:`napari_dip.core.tiling`), the tile's observation,
mask and ground truth, its piece of one code spanning the whole image, and the blending of
finished tiles into the output slice (which may be a memory map or a napari layer's data: tiles
appear there as they finish).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .arrays import Intensity, pad_reflect
from .core.memory import Plan, format_bytes, plan
from .core.tiling import TileGrid

IID_CODES = ("uniform", "uniform01")  # codes of independent pixels, generated block by block
CODE_BLOCK = 256  # code pixels per block side for those


def overlap_for(tile: int) -> int:
    """Default overlap of tiles of side ``tile`` (output pixels): an eighth of it, at least 32."""
    return max(32, tile // 8)


@dataclass
class TiledSlices:
    """The tiles of every slice of a run, and the slices' blending state.

    ``grid`` is on the observed (low-resolution) image, ``grid_hr`` on the output; tile ``t`` of
    slice ``i`` is problem ``(i, t)``.
    """

    config: object
    plan: Plan
    grid: TileGrid
    grid_hr: TileGrid
    intensity: Intensity
    src: np.ndarray  # (N, C, h, w) the input's slices
    gt: np.ndarray | None  # (N, C, h f, w f) or None
    mask: np.ndarray | None  # (N, 1 or C, h, w) or None
    out_size: tuple[int, int]  # (h f, w f)
    code_divisor: int
    _cache: dict = field(default_factory=dict)
    _done: dict = field(default_factory=dict)
    _code: object = None
    tiled = True  # its problems are overlapping tiles (see napari_dip.decoder.DecoderParts)

    @property
    def count(self) -> int:
        return self.grid.count

    @property
    def fitted(self) -> tuple[int, int]:
        """The size every problem's network fits: a tile's."""
        return self.grid_hr.tile

    def seeds(self, batch: list[tuple[int, int]]) -> list[int]:
        """One seed for every tile: their codes are pieces of one code (see :meth:`codes`)."""
        return [self.config.seed] * len(batch)

    def _tile(self, name: str, arrays: np.ndarray, i: int, t: int, grid: TileGrid) -> np.ndarray:
        """Tile ``t`` of slice ``i`` of an input, in unit intensities (masks as they are). A tile
        inside the slice is converted alone, so the slice is never copied whole; slices that
        the grid overruns (smaller than a tile, or rounded up) are padded by reflection once."""
        convert = (lambda x: x) if name == "mask" else self.intensity.to_unit
        if tuple(arrays.shape[-2:]) == grid.covered:
            return np.ascontiguousarray(convert(grid.cut(arrays[i], t)))
        key = (name, i)
        if key not in self._cache:
            for k in [k for k in self._cache if k[0] == name]:
                del self._cache[k]  # one slice at a time per input
            self._cache[key] = pad_reflect(convert(arrays[i]), *grid.covered)
        return np.ascontiguousarray(grid.cut(self._cache[key], t))

    def inputs(self, batch: list[tuple[int, int]]):
        """(observed, ground truth or None, mask or None) tensors (n, C, th, tw) of the problems."""
        import torch

        def stack(name, arrays, grid):
            if arrays is None:
                return None
            return torch.from_numpy(np.stack([self._tile(name, arrays, i, t, grid) for i, t in batch]))
        return (stack("src", self.src, self.grid), stack("gt", self.gt, self.grid_hr),
                stack("mask", self.mask, self.grid))

    def observed(self, i: int, t: int) -> np.ndarray:
        return self._tile("src", self.src, i, t, self.grid)

    def codes(self, batch: list[tuple[int, int]]):
        """Each problem's piece of one code over the whole (padded) output: overlapping tiles
        share their code where they overlap; every slice uses the same code."""
        import torch
        return torch.stack([self._code_tile(t) for _, t in batch])

    def _code_tile(self, t: int):
        cfg = self.config
        d = self.code_divisor
        grid = self.grid_hr.reduced(d) if d > 1 else self.grid_hr
        k = cfg.network.code_shape(*self.grid_hr.tile)[0]
        if cfg.code in IID_CODES:
            y, x = grid.boxes()[t]
            return _iid_code(cfg.code, k, y, x, *grid.tile, cfg.seed)
        if self._code is None:  # smooth codes are made whole (a Deep Decoder's is small)
            from .core.inputs import DEFAULT_FEATURE_SIZE
            from .decoder import spanning_code
            self._code = spanning_code(cfg.code, (k, *grid.covered), cfg.seed, feature_size=DEFAULT_FEATURE_SIZE)
        return grid.cut(self._code, t)

    def add(self, out_slice: np.ndarray, i: int, t: int, restored: np.ndarray) -> bool:
        """Blend tile ``t`` of slice ``i`` (unit intensities) into ``out_slice`` (the user's
        units); True once every tile of the slice is in. The first tile clears the slice."""
        done = self._done.setdefault(i, set())
        if not done:
            out_slice[...] = 0
        # Weights sum to one, so blending the user's units equals converting the blend.
        self.grid_hr.add(out_slice, self.intensity.from_unit(restored), t, crop=self.out_size)
        done.add(t)
        return len(done) == self.count

    def summary(self, slices: int, batch: int) -> str:
        """One line saying what will run."""
        g = self.grid_hr
        info = self.describe(slices)
        return (f"{g.count * slices} tile(s) of {g.tile[0]}x{g.tile[1]} ({g.rows} x {g.cols} per slice, "
                f"overlap >= {info['overlap_min']} px, {slices} slice(s)) in batches of {batch}: about "
                f"{format_bytes(self.plan.bytes_per_problem * batch)} per batch (budget "
                f"{format_bytes(self.plan.budget)})")

    def describe(self, slices: int) -> dict:
        g = self.grid_hr
        return {"tile": list(g.tile), "grid": [g.rows, g.cols], "tiles": g.count, "tiles_total": g.count * slices,
                "overlap_min": min([g.tile[0] - (b - a) for a, b in zip(g.starts_y, g.starts_y[1:])]
                                   + [g.tile[1] - (b - a) for a, b in zip(g.starts_x, g.starts_x[1:])] or [0]),
                "margin": g.margin, "batch_size": self.plan.batch_size,
                "bytes_per_problem": self.plan.bytes_per_problem, "budget": self.plan.budget,
                "precision": self.plan.precision}


def _iid_code(kind: str, channels: int, y: int, x: int, h: int, w: int, seed: int):
    """The window (channels, h, w) at (y, x) of an endless code of independent pixels, built
    from blocks of :data:`CODE_BLOCK` pixels each drawn from its own seeded generator."""
    import torch
    scale = 0.1 if kind == "uniform" else 1.0
    b = CODE_BLOCK
    rows = range(y // b, (y + h - 1) // b + 1)
    cols = range(x // b, (x + w - 1) // b + 1)
    blocks = []
    for r in rows:
        line = []
        for c in cols:
            gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + r) * 1_000_003 + c + 2)
            line.append(torch.rand(channels, b, b, generator=gen) * scale)
        blocks.append(torch.cat(line, dim=2))
    whole = torch.cat(blocks, dim=1)
    y0, x0 = y - rows[0] * b, x - cols[0] * b
    return whole[:, y0:y0 + h, x0:x0 + w].contiguous()


def operator_halo(operator, size: tuple[int, int], observed: tuple[int, int]) -> int | None:
    """How far (pixels) a cropping task's operator reaches, or None when it cannot be tiled:
    its observation is not the image's size, or it does not declare a ``halo`` (an operator
    acting on pixels far apart, e.g. in Fourier space, gives no tile what it needs)."""
    halo = getattr(operator, "halo", None)
    if tuple(size) != tuple(observed) or halo is None:
        return None
    return int(halo)


def tile_slices(config, *, src: np.ndarray, gt, mask, intensity: Intensity, spatial: tuple[int, int],
                padded: tuple[int, int], device, tile_size=None, max_memory=None, halo: int | None = 0,
                ) -> tuple[TiledSlices | None, Plan | None]:
    """The tiles of a run's slices (None: the slices fit whole) and the memory plan (None when
    the slices fit whole and no ``max_memory`` was given: batch sizes are then
    :func:`napari_dip.api.auto_batch_size`'s). Slices are tiled when one of them does not fit
    ``max_memory`` (default: :func:`~napari_dip.core.memory.default_budget`) or ``tile_size`` asks.

    ``halo``: how far the operator reaches (observed pixels, e.g. a PSF's radius): tiles then
    overlap by more than twice it and drop it at their inner edges, where the tile lacks its
    neighbours' pixels; None: the operator cannot be tiled (refused when tiles are needed).
    """
    f = config.factor
    ph, pw = padded
    channels = src.shape[1]
    p = plan((ph * f, pw * f), config.network, channels=channels, factor=f, device=device,
             max_memory=max_memory, tile_size=tile_size, precision=config.fit.precision)
    if p.tile is None:
        return None, p if max_memory is not None else None
    th, tw = p.tile
    if halo is None:
        why = "tile_size asks for tiles" if tile_size else "a slice does not fit the memory budget whole"
        raise ValueError(f"{config.spec.title} with this operator cannot be fitted in tiles ({why}): give the "
                         "operator an integer `halo` attribute (how many pixels it reaches) if it acts locally, "
                         "or raise max_memory")
    if 2 * halo + 2 >= min(th, tw) // f:
        raise ValueError(f"tiles of {th}x{tw} are too small for an operator reaching {halo} pixels (the PSF "
                         f"radius): choose a tile size above {2 * (2 * halo + 2) * f} or raise max_memory")
    d = th // config.network.code_shape(th, tw)[1]
    align = d // math.gcd(d, f)  # low-res starts whose high-res starts are whole code pixels
    h, w = spatial
    covered = (-(-h // align) * align, -(-w // align) * align)
    grid = TileGrid.make(covered, (th // f, tw // f), overlap_for(min(th, tw)) // f, align=align, halo=halo)
    tiled = TiledSlices(config, p, grid, grid.scaled(f), intensity, src, gt, mask, (h * f, w * f), d)
    return tiled, p
