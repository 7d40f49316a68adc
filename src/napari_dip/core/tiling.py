"""Overlapping tiles of a large image: where they lie, how they blend, and stitching them back.

A :class:`TileGrid` splits an (H, W) image into tiles that all have the same size (the size a
network accepts), cover the image, and overlap their neighbours by at least ``overlap``
pixels. Tiles at the right and bottom edges are shifted inward rather than padded, so that
every tile holds only image pixels (when the image is at least one tile wide); the starts
are spread evenly, so the actual overlaps are at least the requested one.

Blending weights are separable and form a partition of unity: along an axis, where two tiles
overlap, the first ``margin`` pixels of the overlap on each side belong to the tile whose
interior they are in, and a cosine (Hann) ramp hands over from one tile to the next across the
rest: one weight falls as cos^2, the other rises as sin^2, so they sum to one, and they are flat
(1) in each tile's interior. The margin drops the pixels nearest a tile's border, where
networks padding their convolutions are least reliable; for deconvolution it is at least the
PSF radius (the pixels a tile cannot explain without its neighbours).

Super-resolution by a factor s: the high-resolution grid is the low-resolution grid with every
size and position multiplied by s (:meth:`TileGrid.scaled`), so low-res tile k maps to high-res
tile k with a matching overlap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> tuple[int, ...]:
    """Starts of tiles of size ``tile`` covering ``[0, length)`` with overlaps >= ``overlap``.

    Every tile lies inside the axis (the last one ends at ``length``) when ``length >= tile``;
    a shorter axis gets one tile at 0 (the caller pads it to the tile size). Starts are
    multiples of ``align`` (``length`` and ``tile`` must then be multiples of it too).
    """
    if tile < 1 or overlap < 0 or align < 1:
        raise ValueError(f"need tile >= 1, overlap >= 0 and align >= 1, got {tile}, {overlap}, {align}")
    if length % align or tile % align:
        raise ValueError(f"length {length} and tile {tile} must be multiples of align {align}")
    if length <= tile:
        return (0,)
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile size {tile}")
    count = math.ceil((length - overlap) / (tile - overlap))
    last = (length - tile) // align  # in units of align
    return tuple(align * round(i * last / (count - 1)) for i in range(count))


def _axis_weights(starts: tuple[int, ...], tile: int, length: int, margin: int) -> np.ndarray:
    """(len(starts), tile) weights along one axis: a partition of unity over ``[0, length)``."""
    w = np.ones((len(starts), tile), np.float64)
    for k in range(len(starts) - 1):
        a, b = starts[k], starts[k + 1]
        lo, hi = b, a + tile  # the overlap of tile k and tile k + 1, in image coordinates
        m = min(margin, (hi - lo) // 2)
        ramp_lo, ramp_hi = lo + m, hi - m
        x = np.arange(lo, hi)
        t = np.clip((x + 0.5 - ramp_lo) / max(ramp_hi - ramp_lo, 1), 0, 1)
        rise = np.sin(0.5 * np.pi * t) ** 2
        w[k, lo - a:] *= 1 - rise
        w[k + 1, : hi - b] *= rise
    # Tiles more than one apart overlap when the overlap exceeds a third of the tile: divide
    # by the sum so that the weights add up to one there too.
    total = np.zeros(max(length, starts[-1] + tile))
    for s, row in zip(starts, w):
        total[s:s + tile] += row
    return w / np.stack([total[s:s + tile] for s in starts])


@dataclass(frozen=True)
class TileGrid:
    """Tiles of size ``tile`` (th, tw) at ``starts_y`` x ``starts_x`` over an image ``shape`` (H, W).

    Tiles are numbered row by row. ``margin``: pixels at each side of an overlap kept by the
    tile whose interior they are in (see the module docstring).
    """

    shape: tuple[int, int]
    tile: tuple[int, int]
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]
    margin: int = 0

    @classmethod
    def make(cls, shape: tuple[int, int], tile: int | tuple[int, int], overlap: int, *,
             margin: int | None = None, align: int = 1, halo: int = 0) -> "TileGrid":
        """A grid over ``shape`` with tiles of ``tile`` and overlaps of at least ``overlap``.

        ``halo`` (e.g. the PSF radius for deconvolution) raises the overlap to at least
        ``2 * halo + 2`` and the margin to at least ``halo``. Default margin: a quarter of the
        overlap.
        """
        th, tw = (tile, tile) if isinstance(tile, int) else tile
        overlap = max(int(overlap), 2 * int(halo) + 2 if halo else 0)
        margin = overlap // 4 if margin is None else int(margin)
        margin = max(margin, int(halo))
        h, w = shape
        return cls((h, w), (th, tw), tile_starts(h, th, overlap, align),
                   tile_starts(w, tw, overlap, align), margin)

    @property
    def count(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    @property
    def rows(self) -> int:
        return len(self.starts_y)

    @property
    def cols(self) -> int:
        return len(self.starts_x)

    @property
    def covered(self) -> tuple[int, int]:
        """The size the tiles span: the image, or the tile size along an axis shorter than it."""
        return (max(self.shape[0], self.starts_y[-1] + self.tile[0]),
                max(self.shape[1], self.starts_x[-1] + self.tile[1]))

    def boxes(self) -> list[tuple[int, int]]:
        """(y0, x0) of every tile, row by row."""
        return [(y, x) for y in self.starts_y for x in self.starts_x]

    def scaled(self, factor: int) -> "TileGrid":
        """The same grid on an image ``factor`` times larger (super-resolution's output)."""
        f = int(factor)
        return TileGrid((self.shape[0] * f, self.shape[1] * f), (self.tile[0] * f, self.tile[1] * f),
                        tuple(s * f for s in self.starts_y), tuple(s * f for s in self.starts_x),
                        self.margin * f)

    def reduced(self, divisor: int) -> "TileGrid":
        """The same grid on an image ``divisor`` times smaller (a Deep Decoder's code)."""
        d = int(divisor)
        sides = (*self.shape, *self.tile, *self.starts_y, *self.starts_x)
        if any(s % d for s in sides):
            raise ValueError(f"the grid's sizes and starts are not all multiples of {d}")
        return TileGrid((self.shape[0] // d, self.shape[1] // d), (self.tile[0] // d, self.tile[1] // d),
                        tuple(s // d for s in self.starts_y), tuple(s // d for s in self.starts_x),
                        self.margin // d)

    def cut(self, x, index: int | None = None):
        """Tile ``index`` of ``x`` (..., H', W'), or all tiles stacked on a new first axis.

        ``x`` must span :attr:`covered` (pad an image smaller than a tile first). Works on
        NumPy arrays and torch tensors alike (views where the array allows).
        """
        if tuple(x.shape[-2:]) != self.covered:
            raise ValueError(f"array has spatial shape {tuple(x.shape[-2:])}, the grid covers {self.covered}")
        th, tw = self.tile
        boxes = self.boxes()
        if index is not None:
            y, x0 = boxes[index]
            return x[..., y:y + th, x0:x0 + tw]
        parts = [x[..., y:y + th, x0:x0 + tw] for y, x0 in boxes]
        return np.stack(parts) if isinstance(x, np.ndarray) else _torch_stack(parts)

    def weights(self, index: int | None = None) -> np.ndarray:
        """Blending weights (tile,) of tile ``index`` or (count, th, tw) of all; float32.

        At every pixel of :attr:`covered` the weights of the tiles covering it sum to one.
        """
        wy = _axis_weights(self.starts_y, self.tile[0], self.covered[0], self.margin)
        wx = _axis_weights(self.starts_x, self.tile[1], self.covered[1], self.margin)
        if index is not None:
            r, c = divmod(index, self.cols)
            return (wy[r][:, None] * wx[c][None, :]).astype(np.float32)
        return (wy[:, None, :, None] * wx[None, :, None, :]).reshape(self.count, *self.tile).astype(np.float32)

    def add(self, out: np.ndarray, tile: np.ndarray, index: int, crop: tuple[int, int] | None = None) -> None:
        """Add tile ``index`` (..., th, tw) times its weight into ``out`` (..., H', W').

        ``crop`` (h, w) limits the write to ``out[..., :h, :w]`` (an output without the padding
        of an image smaller than a tile); ``out`` then has that spatial shape.
        """
        y, x = self.boxes()[index]
        th, tw = self.tile
        h, w = crop or self.covered
        hh, ww = min(th, h - y), min(tw, w - x)
        if hh <= 0 or ww <= 0:
            return
        weighted = tile[..., :hh, :ww] * self.weights(index)[:hh, :ww]
        out[..., y:y + hh, x:x + ww] += weighted.astype(out.dtype, copy=False)

    def stitch(self, tiles: np.ndarray) -> np.ndarray:
        """Blend all tiles (count, ..., th, tw) back into one (..., H', W') float32 image."""
        out = np.zeros((*tiles.shape[1:-2], *self.covered), np.float32)
        for k in range(self.count):
            self.add(out, tiles[k], k)
        return out

    def edges(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Rows and columns where one tile hands over to the next (centres of the overlaps)."""
        th, tw = self.tile
        ys = tuple((self.starts_y[k + 1] + self.starts_y[k] + th) // 2 for k in range(self.rows - 1))
        xs = tuple((self.starts_x[k + 1] + self.starts_x[k] + tw) // 2 for k in range(self.cols - 1))
        return ys, xs


def _torch_stack(parts):
    import torch
    return torch.stack(parts)
