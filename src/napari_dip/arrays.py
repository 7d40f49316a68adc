"""Turning a user's array into the engine's (N, C, H, W) float32 slices in [0, 1] and back.

The one place that handles dtypes, intensity scaling, channel axes, stacks and padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import ImageMeta, blocks, plane_axis

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
        lo, hi = _range(image)
        if image.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
            return cls(0.0, 1.0)
        return cls(lo, hi - lo if hi > lo else 1.0)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.offset) / self.scale).astype(np.float32)

    def from_unit(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) * self.scale + self.offset).astype(np.float32)


def _range(image: np.ndarray) -> tuple[float, float]:
    """(min, max) of an array, read block by block (a memory-mapped volume is not held in RAM)."""
    lows, highs = zip(*[(b.min(), b.max()) for b in blocks(np.asarray(image))])
    return float(np.min(lows)), float(np.max(highs))  # NaN propagates, as in np.min of the whole


def check_image(image, name: str = "image", channel_axis: int | None = None) -> np.ndarray:
    """Validate an image: numeric dtype, finite values, enough dimensions. Never copies."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "uif":
        raise ValueError(f"{name} has unsupported dtype {arr.dtype}; use an integer or float array "
                         "(uint8, uint16, float32, ...)")
    if channel_axis is not None and (isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer))):
        raise TypeError(f"channel_axis must be an integer axis or None, got {channel_axis!r} "
                        f"({type(channel_axis).__name__})")
    need = 2 if channel_axis is None else 3
    if arr.ndim < need:
        raise ValueError(f"{name} must have at least {need} dimensions "
                         f"({'Y, X' if need == 2 else 'Y, X and a channel axis'}), got shape {arr.shape}")
    if channel_axis is not None and not -arr.ndim <= channel_axis < arr.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for {name} with {arr.ndim} dimensions")
    # min and max propagate NaN and show infinities: no temporary array of the image's size
    if arr.dtype.kind == "f" and arr.size and not all(np.isfinite(_range(arr))):
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

    def output_shape(self, factor: int = 1, size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """The shape with Y and X multiplied by ``factor``, or set to ``size`` (H, W)."""
        out = list(self.shape)
        for i, a in enumerate(self.channel_last_view[-2:]):
            out[a] = out[a] * factor if size is None else size[i]
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


def from_slices(slices: np.ndarray, layout: Layout) -> np.ndarray:
    """Inverse of :func:`as_slices` for slices (N, C, H', W') of any spatial size (outputs
    whose spatial axes grew by a factor, or took an operator's image size)."""
    moved_shape = list(layout.stack_shape)
    if layout.channel_axis is not None:
        moved_shape.append(layout.channels)
    moved_shape += list(slices.shape[-2:])
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


# --- Volumes as slices along one axis (the batch runner's slicing; see napari_dip.batch) ---------


@dataclass(frozen=True)
class Slicing:
    """A volume seen as slices: ``np.transpose(volume, perm)`` is (axis, *others, [C], Y, X).

    Flat slice indices (what :func:`napari_dip.api.run` takes) run over (axis, *others) in C
    order, so for a 3D volume the flat index is the index along ``axis``.
    """

    shape: tuple[int, ...]
    axis: int | None            # None: a single 2D image
    in_plane: tuple[int, int]   # the two axes of each slice, in array order
    others: tuple[int, ...]     # further stack axes (e.g. time in a 4D NIfTI)
    channel_axis: int | None

    @property
    def perm(self) -> tuple[int, ...]:
        lead = (() if self.axis is None else (self.axis,)) + self.others
        chan = () if self.channel_axis is None else (self.channel_axis,)
        return lead + chan + self.in_plane

    @property
    def stack_shape(self) -> tuple[int, ...]:
        lead = (() if self.axis is None else (self.axis,)) + self.others
        return tuple(self.shape[a] for a in lead)

    @property
    def view_channel_axis(self) -> int | None:
        """The channel axis in the transposed view (just before Y, X), for api.run."""
        return None if self.channel_axis is None else len(self.perm) - 3

    @property
    def per_index(self) -> int:
        """Flat slices per index along ``axis``."""
        return int(np.prod([self.shape[a] for a in self.others], dtype=np.int64))

    @property
    def length(self) -> int:
        return 1 if self.axis is None else self.shape[self.axis]

    def view(self, array: np.ndarray) -> np.ndarray:
        return np.transpose(array, self.perm)

    def flat_indices(self, indices) -> list[int]:
        """Flat slice indices of the given indices along ``axis`` (each with its further stack axes)."""
        return [i * self.per_index + k for i in indices for k in range(self.per_index)]

    def index(self, flat: int) -> tuple[int, ...]:
        """The index into the transposed view that selects flat slice ``flat``."""
        return tuple(int(i) for i in np.unravel_index(flat, self.stack_shape)) if self.stack_shape else ()

    def _where(self, flat: int) -> tuple[tuple, list[int]]:
        """(key into the untransposed array, axis order of that part for the view)."""
        at = dict(zip(self.perm, self.index(flat)))
        key = tuple(at.get(a, slice(None)) for a in range(len(self.shape)))
        rest = [a for a in range(len(self.shape)) if a not in at]
        return key, [rest.index(a) for a in self.perm[len(at):]]

    def read(self, array, flat: int) -> np.ndarray:
        """Flat slice ``flat`` of ``array`` ([C,] Y, X), read alone: ``array`` may be lazy (Zarr).

        ``array`` has this volume's axes (its in-plane sizes may differ, e.g. a super-resolved output).
        """
        key, order = self._where(flat)
        return np.transpose(np.asarray(array[key]), order)

    def write(self, array, flat: int, value: np.ndarray) -> None:
        """Put ``value`` ([C,] Y, X) into flat slice ``flat`` of ``array`` (inverse of :meth:`read`)."""
        key, order = self._where(flat)
        array[key] = np.transpose(value, np.argsort(order))

    @property
    def count(self) -> int:
        """Flat slices in the whole volume."""
        return int(np.prod(self.stack_shape, dtype=np.int64))

    def output_shape(self, factor: int) -> tuple[int, ...]:
        return tuple(n * factor if a in self.in_plane else n for a, n in enumerate(self.shape))

    def output_spacing(self, spacing: tuple[float, ...] | None, factor: int) -> tuple[float, ...] | None:
        """Spacing per non-channel axis with the in-plane axes divided by ``factor``."""
        if not spacing or factor == 1:
            return spacing
        axes = [a for a in range(len(self.shape)) if a != self.channel_axis]
        return tuple(s / factor if a in self.in_plane else s for a, s in zip(axes, spacing))

    def output_affine(self, affine: np.ndarray | None, factor: int) -> np.ndarray | None:
        """A NIfTI affine for the output: in-plane voxels ``factor`` times smaller, same extent.

        Output voxel i' covers input coordinate (i' + 1/2) / factor - 1/2, so the volume's
        outer edges stay where they were.
        """
        if affine is None or factor == 1:
            return affine
        out = np.array(affine, dtype=np.float64)
        for a in self.in_plane:
            if a < 3:
                out[:3, 3] += out[:3, a] * (1.0 / factor - 1.0) / 2.0
                out[:3, a] /= factor
        return out


def slicing_for(shape: tuple[int, ...], meta: ImageMeta | None, *, axis: int | str | None = None,
                channel_axis: int | None = None) -> Slicing:
    """Choose the slicing axis: ``axis`` (index or axial/coronal/sagittal), else a default.

    The three spatial axes are the first three non-channel axes of a NIfTI file and the last
    three otherwise (Z, Y, X). Default axis: axial for NIfTI, Z (the first spatial axis) else.
    """
    ndim = len(shape)
    chan = None if channel_axis is None else channel_axis % ndim
    plain = [a for a in range(ndim) if a != chan]
    if len(plain) < 2:
        raise ValueError(f"an image needs two spatial axes besides the channel axis, got shape {shape}")
    if len(plain) == 2:
        if axis is not None:
            raise ValueError(f"axis is for volumes; the image has shape {shape} (a single 2D image)")
        return Slicing(tuple(shape), None, (plain[0], plain[1]), (), chan)
    nifti = meta is not None and meta.format == "nifti"
    spatial = plain[:3] if nifti else plain[-3:]
    if axis is None:
        index = plane_axis(meta, "axial") if nifti and meta.affine is not None else spatial[0]
    else:
        index = plane_axis(meta or ImageMeta("", "npy", ""), axis)
        if not -ndim <= index < ndim:
            raise ValueError(f"axis {axis} is out of range for an image with {ndim} dimensions")
        index %= ndim
    if index not in spatial:
        raise ValueError(f"axis {axis} is not a spatial axis of shape {shape}; choose one of "
                         f"{', '.join(map(str, spatial))}")
    in_plane = tuple(a for a in spatial if a != index)
    others = tuple(a for a in plain if a not in spatial)
    return Slicing(tuple(shape), index, (in_plane[0], in_plane[1]), others, chan)


def parse_slices(text: str | None, length: int, *, name: str = "slices") -> list[int]:
    """The indices (sorted, each once) that ``text`` selects of ``length`` slices along an axis.

    ``text``: comma-separated items, each an index (negative counts from the end), a range
    'A:B' (Python slice bounds, either may be empty or negative) or 'middle'; None or ':'
    selects all. ``name`` is what the messages call the selection.
    """
    if text is None or text.strip() in ("", ":"):
        return list(range(length))
    chosen: set[int] = set()
    for item in (t.strip() for t in str(text).split(",")):
        try:
            if item == "middle":
                chosen.add(length // 2)
            elif ":" in item:
                parts = item.split(":")
                if len(parts) != 2:
                    raise ValueError
                chosen.update(range(*slice(*(int(p) if p.strip() else None for p in parts)).indices(length)))
            else:
                index = int(item)
                if not -length <= index < length:
                    raise IndexError
                chosen.add(index % length)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a list of indices and ranges A:B of integers "
                             f"(e.g. 90:100, :10, 5:, 3,7, middle)") from None
        except IndexError:
            raise ValueError(f"{name} {text!r}: index {item} is out of range for the {length} slice(s) "
                             f"along the axis (0..{length - 1})") from None
    if not chosen:
        raise ValueError(f"{name} {text!r} selects no slice of the {length} along the axis")
    return sorted(chosen)
