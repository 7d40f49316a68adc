"""The generalised Anscombe transform and its exact unbiased inverse (Makitalo & Foi).

For ``z`` with mean ``x`` and variance ``a * x + b`` (a Poisson count scaled by ``a`` plus
Gaussian noise), the generalised Anscombe transform (GAT)

    f(z) = 2 / a * sqrt(max(a * z + 3/8 * a**2 + b, 0))

has a variance close to 1 whatever ``x`` is. A denoiser estimates ``D = E[f(z) | x]``; the
algebraic inverse ``f^-1(D)`` is biased at low counts (``E[f(z)] != f(E[z])``). The *exact
unbiased inverse* maps ``D`` to the ``x`` whose expected transformed value is ``D``
(Makitalo & Foi, IEEE TIP 2011 and 2013). Here it is computed, not approximated: ``E[f(z)|x]``
is evaluated on a grid of ``x`` by summing the Poisson probabilities and integrating the
Gaussian by Gauss-Hermite quadrature, and inverted by monotone interpolation; beyond the
grid (``x / a`` above 400 counts, where the bias is below 1e-4 counts) the asymptotic
inverse ``D**2 / 4 - 1/8 - b / a**2`` (in counts) is used.

A negative ``b`` (a dark level: ``var = a * (x - c)``) is handled by shifting the data by
``c = -b / a`` first. With ``a = 0`` the model is Gaussian and the transform is ``z / sqrt(b)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

GRID_COUNTS = 400.0  # the inverse table covers 0..400 expected counts
HERMITE_NODES = 48


@dataclass(frozen=True)
class Anscombe:
    """The GAT for ``var = a * x + b`` (a >= 0); ``forward`` / ``inverse`` on arrays."""

    a: float
    b: float

    def __post_init__(self):
        if self.a < 0 or (self.a == 0 and self.b <= 0):
            raise ValueError(f"the GAT needs a > 0, or a = 0 and b > 0; got a={self.a}, b={self.b}")

    @property
    def shift(self) -> float:
        """Dark level ``c`` subtracted before the transform (0 unless b < 0)."""
        return max(0.0, -self.b / self.a) if self.a > 0 else 0.0

    @property
    def _sigma2(self) -> float:
        """Variance of the Gaussian part in counts (z / a units), after the shift."""
        return (self.b + self.a * self.shift) / self.a ** 2

    def forward(self, z):
        z = np.asarray(z, dtype=np.float64)
        if self.a == 0:
            return z / np.sqrt(self.b)
        counts = (z - self.shift) / self.a
        return 2.0 * np.sqrt(np.maximum(counts + 0.375 + self._sigma2, 0.0))

    def algebraic_inverse(self, d):
        d = np.asarray(d, dtype=np.float64)
        if self.a == 0:
            return d * np.sqrt(self.b)
        return (np.maximum(d / 2, 0.0) ** 2 - 0.375 - self._sigma2) * self.a + self.shift

    def inverse(self, d):
        """The exact unbiased inverse: the ``x`` with ``E[forward(z) | x] = d``."""
        d = np.asarray(d, dtype=np.float64)
        if self.a == 0:
            return d * np.sqrt(self.b)
        xs, ds = _expected_table(self._sigma2)
        counts = np.where(d <= ds[-1], np.interp(d, ds, xs),
                          d ** 2 / 4 - 0.125 - self._sigma2)
        counts = np.where(d <= ds[0], 0.0, counts)
        return counts * self.a + self.shift

    def expected(self, x):
        """``E[forward(z) | x]`` for clean intensities ``x`` (the quantity a denoiser estimates)."""
        x = np.asarray(x, dtype=np.float64)
        if self.a == 0:
            return x / np.sqrt(self.b)
        return _expected(np.maximum((x - self.shift) / self.a, 0.0).ravel(), self._sigma2).reshape(x.shape)


def _expected(counts: np.ndarray, sigma2: float) -> np.ndarray:
    """E[2 sqrt(max(k + s n + 3/8 + s^2, 0))], k ~ Poisson(counts), n ~ N(0, 1), s^2 = sigma2."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(HERMITE_NODES)
    weights = weights / weights.sum()
    s = np.sqrt(max(sigma2, 0.0))
    out = np.empty(len(counts))
    for i, lam in enumerate(counts):
        kmax = int(lam + 12 * np.sqrt(lam) + 20)
        k = np.arange(kmax + 1)
        pmf = stats.poisson.pmf(k, lam) if lam > 0 else (k == 0).astype(float)
        t = k[:, None] + s * nodes[None, :] + 0.375 + sigma2
        out[i] = pmf @ (2.0 * np.sqrt(np.maximum(t, 0.0)) @ weights)
    return out


_TABLES: dict[float, tuple[np.ndarray, np.ndarray]] = {}


def _expected_table(sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """(counts, E[f]) on a grid dense at low counts; cached per Gaussian variance."""
    key = round(float(sigma2), 12)
    if key not in _TABLES:
        xs = np.concatenate([np.linspace(0, 2, 41), np.geomspace(2.05, GRID_COUNTS, 260)])
        ds = _expected(xs, sigma2)
        # E[f] rises with x; keep it strictly increasing for interpolation.
        ds = np.maximum.accumulate(ds + np.arange(len(ds)) * 1e-12)
        _TABLES[key] = (xs, ds)
    return _TABLES[key]
