"""Counting the calls that make a GPU wait for its queue (host syncs), on any device.

On CUDA, reading a tensor's values on the host (``item``, ``tolist``, ``bool(t)``, ``cpu``,
``numpy``), asking ``nonzero`` for its size, or indexing with a boolean mask (which calls
``nonzero``) blocks the CPU until the GPU has run everything queued. On the CPU these calls
are free, so a test counts them instead: :class:`HostReads` patches them on ``torch.Tensor``
for the duration of a ``with`` block and counts every call, whatever the tensor's device.
"""
from __future__ import annotations

import threading

import torch

READS = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")


def _bool_mask(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool and p.ndim > 0 for p in parts)


class HostReads:
    """Count host reads of tensor values (see the module docstring) inside the block."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()
        self._saved: dict[str, object] = {}

    def _bump(self) -> None:
        with self._lock:
            self.count += 1

    def __enter__(self) -> "HostReads":
        for name in READS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def counted(t, *args, _original=original, **kwargs):
                self._bump()
                return _original(t, *args, **kwargs)
            setattr(torch.Tensor, name, counted)
        for name in ("__getitem__", "__setitem__"):
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def masked(t, index, *args, _original=original):
                if _bool_mask(index):
                    self._bump()
                return _original(t, index, *args)
            setattr(torch.Tensor, name, masked)
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
