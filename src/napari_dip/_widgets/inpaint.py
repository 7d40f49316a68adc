"""Inpainting (Deep Image Prior): A = multiplication by a mask of the known pixels.

The pixels to fill are the painted labels (> 0) of a Labels layer or the inside of the shapes of
a Shapes layer, in the image's data coordinates ("invert mask": the unpainted pixels). By
default the result keeps the known pixels as they are and takes only the filled ones from the
network.
"""
from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox

from .form import Asked, TaskForm, layer_choices

MOST = 0.5  # above this share of pixels to fill, the mask is probably inverted


class LargeFill(Asked):
    """The mask marks most of the image to fill; the user is asked (see InpaintWidget.known)."""


class InpaintWidget(TaskForm):
    """Dock widget: fill the masked pixels of an image layer."""

    task = "inpaint"
    title = "DIP inpaint"

    def task_fields(self) -> list:
        from napari.layers import Labels, Shapes

        return [ComboBox(name="mask", label="fill mask", choices=layer_choices(self.viewer, (Labels, Shapes)),
                         tooltip="Labels (painted pixels > 0) or Shapes layer marking the pixels to fill"),
                CheckBox(name="invert_mask", label="invert mask", value=False,
                         tooltip="Fill the pixels the mask does NOT mark (for a mask painted over the "
                                 "known pixels)"),
                CheckBox(name="keep_known", label="keep known pixels", value=True,
                         tooltip="The result is the input where the pixel is known and the network's "
                                 "output only in the filled pixels; off: the network's raw output "
                                 "everywhere (known pixels slightly smoothed)")]

    def known(self, layer) -> np.ndarray:
        """The known pixels of ``layer`` for the form's mask (inverted if asked), checked.

        A mask that marks more than half of the image to fill is refused once, with a
        notification that offers to invert the mask or to run anyway.
        """
        known = known_pixels(self["mask"].value, layer, invert=self["invert_mask"].value)
        fill = 1.0 - float(np.mean(known))
        if fill > MOST and not self._large_fill_ok:
            self._offer_invert(self["mask"].value.name, layer.name, fill)
            raise LargeFill(f"the mask {self['mask'].value.name!r} marks {100 * fill:.0f}% of {layer.name!r} to fill")
        self._large_fill_ok = False
        return known

    _large_fill_ok = False

    def _offer_invert(self, mask: str, image: str, fill: float) -> None:
        from napari.utils.notifications import Notification, NotificationSeverity, notification_manager

        def invert(*_):
            self["invert_mask"].value = not self["invert_mask"].value
            self.run()

        def anyway(*_):
            self._large_fill_ok = True
            self.run()

        ticked = self["invert_mask"].value
        notification_manager.dispatch(Notification(
            f"The mask {mask!r} marks {100 * fill:.0f}% of {image!r} to fill: inpainting needs most pixels "
            f"known. If the mask marks the known pixels, {'untick' if ticked else 'tick'} 'invert mask'.",
            severity=NotificationSeverity.WARNING,
            actions=[("Invert mask and run", invert), ("Run anyway", anyway)]))

    def extra_inputs(self, layer, block_index) -> dict:
        return {"mask": self.known(layer)[block_index]}

    def kept_pixels(self, layer, block_index):
        if not self["keep_known"].value:
            return None
        known = known_pixels(self["mask"].value, layer, invert=self["invert_mask"].value)[block_index]
        return known, np.asarray(layer.data[block_index], dtype=np.float32)


def known_pixels(mask_layer, image_layer, *, invert: bool = False) -> np.ndarray:
    """A boolean array shaped like the image layer's data: True where the pixel is known.

    A 2D mask applies to every slice; RGB images share the mask across channels. ``invert``:
    the mask marks the known pixels instead of the pixels to fill.
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
    if invert:
        holes = ~holes
    if not holes.any():
        raise ValueError(f"mask layer {mask_layer.name!r} marks no pixels to fill"
                         + (" (with 'invert mask': it marks every pixel)" if invert else ""))
    if holes.all():
        raise ValueError(f"mask layer {mask_layer.name!r} marks every pixel to fill, leaving nothing known"
                         + ("" if invert else "; tick 'invert mask' if it marks the known pixels"))
    known = np.broadcast_to(~holes, shape)
    if image_layer.rgb:
        known = np.broadcast_to(known[..., None], image_layer.data.shape)
    return known
