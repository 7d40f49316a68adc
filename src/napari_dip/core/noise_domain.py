"""Where a denoising fit happens for a noise model: the map from image units to the fitted
array and back.

- ``intensity``: ``u = (z - offset) / scale`` (the engine's [0, 1] scaling), fitted with the
  squared error; right for Gaussian noise, and the domain of the likelihood losses, whose
  model is carried into the same units (:meth:`NoiseModel.rescaled`).
- ``vst``: the generalised Anscombe transform of ``z`` with the model's ``a`` and ``b``
  (noise of unit variance), scaled to [0, 1] by its range; fitted with the squared error and
  mapped back by the exact unbiased inverse (:mod:`.noise_vst`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .noise import NoiseModel
from .noise_vst import Anscombe


@dataclass(frozen=True)
class IntensityDomain:
    """``u = (z - offset) / scale``; ``model`` is the noise in these units (or None)."""

    offset: float
    scale: float
    model: NoiseModel | None = None

    def to_fit(self, z: np.ndarray) -> np.ndarray:
        return ((np.asarray(z, np.float64) - self.offset) / self.scale).astype(np.float32)

    def back(self, u: np.ndarray) -> np.ndarray:
        return (np.asarray(u, np.float64) * self.scale + self.offset).astype(np.float32)


@dataclass(frozen=True)
class VstDomain:
    """``u = (GAT(z) - low) / span``: unit-variance noise, scaled to about [0, 1]."""

    gat: Anscombe
    low: float
    span: float

    @classmethod
    def of(cls, image: np.ndarray, model: NoiseModel) -> "VstDomain":
        if model.kind == "rician":
            raise ValueError("the Anscombe transform is for Poisson-Gaussian noise; use the 'nll' "
                             "or 'mse' loss for Rician (MRI magnitude) images")
        gat = Anscombe(model.a, model.b)
        t = gat.forward(image)
        lo, hi = float(t.min()), float(t.max())
        return cls(gat, lo, hi - lo if hi > lo else 1.0)

    def to_fit(self, z: np.ndarray) -> np.ndarray:
        return ((self.gat.forward(z) - self.low) / self.span).astype(np.float32)

    def back(self, u: np.ndarray) -> np.ndarray:
        return self.gat.inverse(np.asarray(u, np.float64) * self.span + self.low).astype(np.float32)

    @property
    def sigma(self) -> float:
        """The noise's standard deviation in the fitted units (1 before the scaling)."""
        return 1.0 / self.span
