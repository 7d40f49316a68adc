"""Checks of an input layer before a job starts, with messages in napari terms: which layer, what
to change in the viewer. The engine checks again (its messages are written for Python users)."""
from __future__ import annotations

import numpy as np

from ..arrays import MIN_SIDE

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_input(layer, block: np.ndarray, what: str = "image") -> None:
    """Raise ValueError naming ``layer`` when ``block`` (the part of it to process) cannot be fitted."""
    name = layer.name
    if block.dtype.kind not in "buif":
        raise ValueError(f"the {what} layer {name!r} holds {block.dtype} values, not numbers; "
                         "choose an image layer with grey or colour values")
    h, w = block.shape[-3:-1] if layer.rgb else block.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"the {what} layer {name!r} is {h}x{w} pixels; the networks need at least "
                         f"{MIN_SIDE}x{MIN_SIDE}: choose a larger layer or region"
                         + ("" if layer.rgb or block.shape[-1] not in (3, 4) else
                            "; if its last axis holds colours, add it as an RGB layer (viewer.add_image(data, rgb=True))"))
    if block.dtype.kind != "f":
        return
    finite = np.isfinite(block)
    if not finite.all():
        bad = int(block.size - np.count_nonzero(finite))
        first = ", ".join(str(int(i)) for i in np.argwhere(~finite)[0])
        raise ValueError(f"the {what} layer {name!r} has {bad} NaN or infinite pixel(s) (the first at data "
                         f"index {first}); fill them first, e.g. paint them into a Labels layer and fill "
                         "them with the Inpaint dock, or crop them away")
    lo, hi = float(block.min()), float(block.max())
    if max(abs(lo), abs(hi), hi - lo) > FLOAT32_MAX:
        raise ValueError(f"the {what} layer {name!r} has values from {lo:.3g} to {hi:.3g}, beyond the "
                         f"float32 range the fit works in (about ±{FLOAT32_MAX:.1e}); rescale the layer "
                         f"(in the napari console: viewer.layers[{name!r}].data = "
                         f"viewer.layers[{name!r}].data / {max(abs(lo), abs(hi)):.0e}) and run again")
