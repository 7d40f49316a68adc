"""Noise models of real images: the variance of the noise as a function of the clean signal.

Every model here is ``var(x) = a * x + b`` in the units it was estimated in, which covers
Gaussian (``a = 0``), Poisson (``b = 0``) and Poisson-Gaussian noise (photon shot noise plus
camera read noise, Foi et al. 2008); ``rician`` (MRI magnitude images) keeps the variance of
the two underlying Gaussian channels in ``b``. A model is carried between intensity scales
with :meth:`NoiseModel.rescaled`: the engine fits images scaled by ``(z - offset) / scale``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import special

NOISE_KINDS = ("gaussian", "poisson-gaussian", "poisson", "rician")
NOISE_CHOICES = ("auto",) + NOISE_KINDS


@dataclass(frozen=True)
class NoiseModel:
    """``var(x) = a * x + b`` (Rician: ``b`` is the variance of each Gaussian channel)."""

    kind: str
    a: float = 0.0
    b: float = 0.0

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise model {self.kind!r}; choose one of {', '.join(NOISE_CHOICES)}")
        if not (np.isfinite(self.a) and np.isfinite(self.b)):
            raise ValueError(f"noise parameters must be finite numbers, got a={self.a}, b={self.b}")
        if self.a < 0:
            raise ValueError(f"the signal-dependent noise parameter a must be >= 0, got {self.a}")
        if self.kind in ("gaussian", "rician") and self.a != 0:
            raise ValueError(f"{self.kind} noise has no signal-dependent part: a must be 0, got {self.a}")
        if self.kind == "poisson" and self.a <= 0:
            raise ValueError("Poisson noise needs a gain a > 0")

    @property
    def sigma(self) -> float:
        """Standard deviation of the signal-independent part (Gaussian, Rician channels)."""
        return float(np.sqrt(max(self.b, 0.0)))

    def variance(self, x):
        """The noise variance at clean intensity ``x`` (arrays or tensors), floored at 1e-12."""
        v = self.a * x + self.b
        return v.clip(min=1e-12) if hasattr(v, "clip") else max(v, 1e-12)

    def rescaled(self, offset: float, scale: float) -> "NoiseModel":
        """The same noise in units ``u = (z - offset) / scale``.

        ``var_u(u) = var_z(scale * u + offset) / scale**2``: ``a_u = a / scale`` and
        ``b_u = (a * offset + b) / scale**2``.
        """
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        return NoiseModel(self.kind, self.a / scale, (self.a * offset + self.b) / scale ** 2)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_noise_params(text: str) -> tuple[float, float]:
    """``"a,b"`` (e.g. from ``--noise-params``) as two floats, with one clear error."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        a, b = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"noise parameters must be two numbers 'a,b' (variance = a * x + b in the "
                         f"image's units), got {text!r}") from None
    return a, b


def model_from_params(kind: str, a: float, b: float) -> NoiseModel:
    """A model of ``kind`` (not ``auto``) from user-given parameters; ``gaussian`` takes b only."""
    if kind == "auto":
        kind = "gaussian" if a == 0 else "poisson" if b == 0 else "poisson-gaussian"
    return NoiseModel(kind, float(a), float(b))


def rician_moments(nu: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a Rician magnitude |nu + N(0, s^2) + i N(0, s^2)|."""
    t = np.asarray(nu, dtype=np.float64) ** 2 / (4 * sigma ** 2)
    laguerre = (1 + 2 * t) * special.i0e(t) + 2 * t * special.i1e(t)
    mean = sigma * np.sqrt(np.pi / 2) * laguerre
    return mean, 2 * sigma ** 2 + np.asarray(nu, dtype=np.float64) ** 2 - mean ** 2


def rician_signal(mean, sigma: float) -> np.ndarray:
    """The underlying magnitude ``nu`` whose Rician mean is ``mean`` (0 at or below the noise
    floor ``sigma * sqrt(pi / 2)``): removes the bias a fit of the mean leaves in dark regions."""
    nus = sigma * np.concatenate([[0], np.geomspace(1e-3, 60, 600)])
    m, _ = rician_moments(nus, sigma)
    mean = np.asarray(mean, dtype=np.float64)
    return np.where(mean > m[-1], np.sqrt(np.maximum(mean ** 2 - sigma ** 2, 0)), np.interp(mean, m, nus))
