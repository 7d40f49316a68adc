"""Super-resolution (Deep Image Prior): A = Lanczos2 downsampling by an integer factor."""
from __future__ import annotations

from magicgui.widgets import SpinBox

from .form import TaskForm


class SuperResolutionWidget(TaskForm):
    """Dock widget: super-resolve by ``factor``; the result overlays the input in world space."""

    task = "superres"
    title = "DIP super-resolution"

    def task_fields(self) -> list:
        factor = SpinBox(name="factor", min=2, max=32, value=4,
                         tooltip="Upsampling factor in Y and X; the result keeps the input's world extent")
        factor.changed.connect(self._factor_changed)
        return [factor]

    def factor(self) -> int:
        return int(self["factor"].value)

    def _factor_changed(self, *_):
        # The paper's iteration count and code noise depend on the factor; typed values stay.
        if hasattr(self, "runner"):
            self._follow_preset()
