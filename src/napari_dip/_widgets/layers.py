"""Layer helpers for the widgets: what to process (scope), result names, result geometry.

Axes of an image layer: the last two non-channel axes are Y, X; an RGB layer's last axis holds
the channels; every other axis is a stack axis walked slice by slice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCOPES = ("current slice", "all slices", "range")


@dataclass(frozen=True)
class Region:
    """A block of a layer: ``index`` cuts the data, ``offset`` is its start in data pixels."""

    index: tuple[slice, ...]
    offset: tuple[int, ...]  # one per non-channel axis

    def describe(self) -> str:
        return ", ".join(f"{s.start}:{s.stop}" if s.start is not None else ":" for s in self.index)


def stack_ndim(layer) -> int:
    """Number of stack axes (axes other than Y, X and an RGB channel axis)."""
    return layer.ndim - 2


def current_point(layer, viewer) -> tuple[int, ...]:
    """The data index of the slice the viewer shows, on the layer's stack axes."""
    coords = layer.world_to_data(viewer.dims.point)
    shape = layer.data.shape
    return tuple(int(np.clip(np.round(coords[a]), 0, shape[a] - 1)) for a in range(stack_ndim(layer)))


def region(layer, viewer, scope: str, first: int = 0, last: int = 0) -> Region:
    """The block of ``layer`` a job processes.

    ``current slice``: the slice the viewer shows; ``all slices``: the whole layer;
    ``range``: slices ``first..last`` (inclusive) along the last stack axis (the one usually
    scrolled, e.g. Z), at the viewer's position on the other stack axes.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    n = stack_ndim(layer)
    full = [slice(None)] * layer.data.ndim
    offset = [0] * layer.ndim
    if n == 0 or scope == "all slices":
        return Region(tuple(full), tuple(offset))
    point = current_point(layer, viewer)
    axes = range(n) if scope == "current slice" else range(n - 1)
    for a in axes:
        full[a], offset[a] = slice(point[a], point[a] + 1), point[a]
    if scope == "range":
        size = layer.data.shape[n - 1]
        if not 0 <= first <= last < size:
            raise ValueError(f"range {first}..{last} is outside the layer's slices 0..{size - 1} "
                             f"on axis {n - 1}; choose 0 <= first <= last <= {size - 1}")
        full[n - 1], offset[n - 1] = slice(first, last + 1), first
    return Region(tuple(full), tuple(offset))


def unique_name(viewer, base: str) -> str:
    """``base``, or ``base (2)``, ``base (3)``... whichever no layer has yet."""
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    k = 2
    while f"{base} ({k})" in names:
        k += 1
    return f"{base} ({k})"


def result_geometry(layer, offset: tuple[int, ...], factor: int = 1) -> dict:
    """scale, translate, units and axis labels that keep a result aligned with ``layer``.

    A block starting at ``offset`` moves by ``scale * offset``; Y and X upsampled by ``factor``
    get ``scale / factor`` and move by ``-scale * (factor - 1) / (2 * factor)`` (napari puts
    pixel centres on integer data coordinates).
    """
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float) + scale * np.asarray(offset, dtype=float)
    out_scale = scale.copy()
    out_scale[-2:] = scale[-2:] / factor
    translate[-2:] -= scale[-2:] * (factor - 1) / (2 * factor)
    return {"scale": tuple(out_scale), "translate": tuple(translate),
            "units": tuple(str(u) for u in layer.units), "axis_labels": tuple(layer.axis_labels)}
