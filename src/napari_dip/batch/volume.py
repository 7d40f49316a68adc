"""How a 2D-5D volume is cut into slices along one axis, and how the output's geometry follows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io import ImageMeta, plane_axis


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

    def flat_indices(self, start: int, stop: int) -> list[int]:
        """Flat slice indices of the indices start..stop-1 along ``axis``."""
        return list(range(start * self.per_index, stop * self.per_index))

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
            raise ValueError(f"--axis is for volumes; the image has shape {shape} (a single 2D image)")
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


def parse_range(text: str | None, length: int) -> tuple[int, int]:
    """'A:B' (Python slice bounds, either may be empty or negative) -> (start, stop) in 0..length."""
    if text is None or text.strip() in ("", ":"):
        return 0, length
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop, step = slice(*(int(p) if p.strip() else None for p in parts)).indices(length)
    except ValueError:
        raise ValueError(f"--slices {text!r} is not a range A:B of integers (e.g. 90:100, :10, 5:)") from None
    if stop <= start:
        raise ValueError(f"--slices {text!r} selects no slice of the {length} along the axis")
    return start, stop
