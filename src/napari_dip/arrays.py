"""Turning a user's array into the engine's (N, C, H, W) float32 slices in [0, 1] and back.

The one place that handles dtypes, intensity scaling, channel axes, stacks and padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SIDE = 8


@dataclass(frozen=True)
class Intensity:
    """Affine map between the user's intensities and [0, 1]: unit = (x - offset) / scale."""

    offset: float
    scale: float

    @classmethod
    def of(cls, image: np.ndarray) -> "Intensity":
        """uint8 uses 0..255; floats already in [0, 1] stay; anything else uses its min..max."""
        if image.dtype == np.uint8:
            return cls(0.0, 255.0)
        lo, hi = float(np.min(image)), float(np.max(image))
        if image.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
            return cls(0.0, 1.0)
        return cls(lo, hi - lo if hi > lo else 1.0)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.offset) / self.scale).astype(np.float32)

    def from_unit(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) * self.scale + self.offset).astype(np.float32)


def check_image(image, name: str = "image", channel_axis: int | None = None) -> np.ndarray:
    """Validate an image: numeric dtype, finite values, enough dimensions. Never copies."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "uif":
        raise ValueError(f"{name} has unsupported dtype {arr.dtype}; use an integer or float array "
                         "(uint8, uint16, float32, ...)")
    need = 2 if channel_axis is None else 3
    if arr.ndim < need:
        raise ValueError(f"{name} must have at least {need} dimensions "
                         f"({'Y, X' if need == 2 else 'Y, X and a channel axis'}), got shape {arr.shape}")
    if channel_axis is not None and not -arr.ndim <= channel_axis < arr.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for {name} with {arr.ndim} dimensions")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values; replace them (e.g. np.nan_to_num) first")
    return arr


@dataclass(frozen=True)
class Layout:
    """How a user's array maps to (N, C, H, W) slices."""

    shape: tuple[int, ...]
    channel_axis: int | None  # normalised to a non-negative index, or None

    @property
    def channel_last_view(self) -> tuple[int, ...]:
        """Axes order that moves the channel axis just before the two spatial axes."""
        axes = list(range(len(self.shape)))
        if self.channel_axis is None:
            return tuple(axes)
        axes.remove(self.channel_axis)
        return tuple(axes[:-2] + [self.channel_axis] + axes[-2:])

    @property
    def spatial(self) -> tuple[int, int]:
        moved = [self.shape[a] for a in self.channel_last_view]
        return moved[-2], moved[-1]

    @property
    def stack_shape(self) -> tuple[int, ...]:
        moved = [self.shape[a] for a in self.channel_last_view]
        return tuple(moved[:-3] if self.channel_axis is not None else moved[:-2])

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else self.shape[self.channel_axis]

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))

    def output_shape(self, factor: int = 1) -> tuple[int, ...]:
        out = list(self.shape)
        spatial_axes = [a for a in self.channel_last_view[-2:]]
        for a in spatial_axes:
            out[a] *= factor
        return tuple(out)


def layout_of(image: np.ndarray, channel_axis: int | None) -> Layout:
    ax = None if channel_axis is None else channel_axis % image.ndim
    layout = Layout(tuple(image.shape), ax)
    h, w = layout.spatial
    if min(h, w) < MIN_SIDE:
        hint = (" If the last axis holds colour channels, pass channel_axis=-1."
                if channel_axis is None and image.shape[-1] in (3, 4) else "")
        raise ValueError(f"image is {h}x{w} pixels in Y, X; the networks need at least "
                         f"{MIN_SIDE}x{MIN_SIDE}.{hint}")
    return layout


def as_slices(image: np.ndarray, layout: Layout) -> np.ndarray:
    """A (N, C, H, W) view (or copy) of the image; the caller's array is never modified."""
    moved = np.transpose(image, layout.channel_last_view)
    h, w = moved.shape[-2:]
    return moved.reshape(layout.n_slices, layout.channels, h, w)


def from_slices(slices: np.ndarray, layout: Layout, factor: int = 1) -> np.ndarray:
    """Inverse of :func:`as_slices` for outputs whose spatial axes grew by ``factor``."""
    h, w = layout.spatial
    moved_shape = list(layout.stack_shape)
    if layout.channel_axis is not None:
        moved_shape.append(layout.channels)
    moved_shape += [h * factor, w * factor]
    moved = slices.reshape(moved_shape)
    return np.transpose(moved, np.argsort(layout.channel_last_view))


def pad_reflect(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad the last two axes of ``x`` by reflection at the bottom and right to (height, width)."""
    h, w = x.shape[-2:]
    pads = [(0, 0)] * (x.ndim - 2) + [(0, height - h), (0, width - w)]
    return np.pad(x, pads, mode="reflect") if (height, width) != (h, w) else x


def padded_size(network, height: int, width: int, factor: int = 1) -> tuple[int, int]:
    """Smallest observed size >= (height, width) whose restored size the network accepts."""
    out = []
    for n in (height, width):
        m = n
        while True:
            target = network.padded_size(m * factor, m * factor)[0]
            if target == m * factor:
                break
            m = -(-target // factor)
        out.append(m)
    return out[0], out[1]
