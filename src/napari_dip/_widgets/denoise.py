"""Denoise (Deep Image Prior): the observed image is the noisy image (A = identity)."""
from __future__ import annotations

from .form import TaskForm


class DenoiseWidget(TaskForm):
    """Dock widget: denoise an image layer, a slice, a range or a whole stack."""

    task = "denoise"
    title = "DIP denoise"
