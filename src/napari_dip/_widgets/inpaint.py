"""Inpainting (Deep Image Prior): A = multiplication by a mask of the known pixels.

The pixels to fill are the painted labels (> 0) of a Labels layer or the inside of the shapes of
a Shapes layer, in the image's data coordinates.
"""
from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox

from .form import TaskForm, layer_choices


class InpaintWidget(TaskForm):
    """Dock widget: fill the masked pixels of an image layer."""

    task = "inpaint"
    title = "DIP inpaint"

    def task_fields(self) -> list:
        from napari.layers import Labels, Shapes

        return [ComboBox(name="mask", label="fill mask", choices=layer_choices(self.viewer, (Labels, Shapes)),
                         tooltip="Labels (painted pixels > 0) or Shapes layer marking the pixels to fill")]

    def extra_inputs(self, layer, block_index) -> dict:
        return {"mask": known_pixels(self["mask"].value, layer)[block_index]}


def known_pixels(mask_layer, image_layer) -> np.ndarray:
    """A boolean array shaped like the image layer's data: True where the pixel is known.

    A 2D mask applies to every slice; RGB images share the mask across channels.
    """
    from napari.layers import Shapes

    if mask_layer is None:
        raise ValueError("choose a fill mask: a Labels layer (paint the pixels to fill) or a Shapes layer")
    shape = image_layer.data.shape[:image_layer.ndim]  # without the RGB channel axis
    if isinstance(mask_layer, Shapes):
        target = shape[-mask_layer.ndim:] if mask_layer.ndim <= len(shape) else shape
        if mask_layer.nshapes == 0:
            raise ValueError(f"Shapes layer {mask_layer.name!r} has no shapes; draw the regions to fill")
        holes = mask_layer.to_labels(labels_shape=target) > 0
    else:
        holes = np.asarray(mask_layer.data) > 0
    if holes.shape != shape[-holes.ndim:] or holes.ndim not in (2, len(shape)):
        raise ValueError(f"mask layer {mask_layer.name!r} has shape {holes.shape}; it must match the "
                         f"image's Y, X shape {shape[-2:]} or its full shape {shape}")
    if not holes.any():
        raise ValueError(f"mask layer {mask_layer.name!r} marks no pixels to fill")
    known = np.broadcast_to(~holes, shape)
    if image_layer.rgb:
        known = np.broadcast_to(known[..., None], image_layer.data.shape)
    return known
