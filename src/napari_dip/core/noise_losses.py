"""Losses for signal-dependent noise, registered in :data:`~napari_dip.core.losses.LOSSES`.

All take per-problem parameters of ``var = a * x + b`` in the engine's units (see
:meth:`~napari_dip.core.noise.NoiseModel.rescaled`) as (G,) tensors, and return the mean
deviance per problem (>= 0, 0 at the best fit of each pixel), as the loss slot asks:

- ``gaussian-nll``: the heteroscedastic Gaussian likelihood, ``(y - p)**2 / v(p) + log v(p)``
  with ``v(p) = a * p + b`` floored at ``a**2`` (one photon's variance; ``b / 10`` when a = 0),
  minus its minimum over ``p`` (closed form: the smaller root of
  ``a r**2 - (2 V + a**2) r + a V = 0`` with ``r = y - p``, ``V = v(y)``);
- ``poisson-nll``: the Poisson deviance of counts ``(y - c) / a`` with rate ``(p - c) / a``
  (``c``: the dark level ``-b / a`` when b < 0, else 0);
- ``vst-mse``: the squared error between the generalised Anscombe transform of ``y`` and the
  *expected* transform at ``p`` (:meth:`~napari_dip.core.noise_vst.Anscombe.expected`, the
  exact unbiased inverse's table), so the network's output stays an intensity and needs no
  inverse.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .losses import LOSSES
from .noise import NoiseModel
from .noise_vst import Anscombe, _expected_table
from .slots import PerProblem


def _column(values: Sequence[float]) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32)


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.ndim - 1)))


@LOSSES.register("gaussian-nll")
class GaussianNLL(PerProblem):
    """Heteroscedastic Gaussian deviance with variance ``a * p + b`` per problem."""

    name = "gaussian-nll"
    per_problem = ("a", "b")

    def __init__(self, a: Sequence[float], b: Sequence[float]):
        self.a, self.b = _column(a), _column(b)
        if bool((self.a < 0).any()) or bool(((self.a == 0) & (self.b <= 0)).any()):
            raise ValueError("gaussian-nll needs a >= 0, and b > 0 where a = 0")

    def _half_nll(self, r, v):
        return r * r / v + torch.log(v)

    def __call__(self, prediction: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        a, b = _view(self.a.to(prediction), prediction), _view(self.b.to(prediction), prediction)
        floor = torch.where(a > 0, a * a, b / 10).clamp_min(1e-12)
        v = (a * prediction + b).clamp_min(floor)
        value = self._half_nll(observed - prediction, v)
        with torch.no_grad():
            y = observed
            big = (a * y + b).clamp_min(floor)
            c = 2 * big + a * a
            r = 2 * a * big / (c + torch.sqrt((c * c - 4 * a * a * big).clamp_min(0)))
            candidates = [y - r, y, torch.where(a > 0, (floor - b) / a.clamp_min(1e-12), y)]
            best = torch.stack([self._half_nll(y - p, (a * p + b).clamp_min(floor)) for p in candidates]).amin(0)
        return (value - best).clamp_min(0).flatten(1).mean(1)


@LOSSES.register("poisson-nll")
class PoissonNLL(PerProblem):
    """Poisson deviance of ``(y - c) / a`` counts at rate ``(p - c) / a`` per problem."""

    name = "poisson-nll"
    per_problem = ("a", "c")

    def __init__(self, a: Sequence[float], c: Sequence[float] | None = None):
        self.a = _column(a)
        self.c = torch.zeros_like(self.a) if c is None else _column(c)
        if bool((self.a <= 0).any()):
            raise ValueError("poisson-nll needs a gain a > 0 for every problem")

    def __call__(self, prediction: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        a, c = _view(self.a.to(prediction), prediction), _view(self.c.to(prediction), prediction)
        rate = ((prediction - c) / a).clamp_min(1e-3)
        k = ((observed - c) / a).clamp_min(0)
        log_ratio = torch.where(k > 0, torch.log(k.clamp_min(1e-12) / rate), torch.zeros_like(k))
        return (rate - k + k * log_ratio).clamp_min(0).flatten(1).mean(1)


@LOSSES.register("vst-mse")
class VstMSE(PerProblem):
    """``(GAT(y) - E[GAT(z) | p])**2`` per problem (unit variance at the truth)."""

    name = "vst-mse"
    per_problem = ("a", "b", "shift", "sigma2", "table")

    def __init__(self, a: Sequence[float], b: Sequence[float]):
        gats = [Anscombe(float(ai), float(bi)) for ai, bi in zip(a, b)]
        self.a, self.b = _column(a), _column(b)
        self.shift = _column([g.shift for g in gats])
        self.sigma2 = _column([g._sigma2 if g.a > 0 else 0.0 for g in gats])
        tables = [_expected_table(g._sigma2)[1] if g.a > 0 else np.zeros_like(_expected_table(0.0)[1])
                  for g in gats]
        self.grid = torch.as_tensor(_expected_table(0.0)[0], dtype=torch.float32)  # shared counts grid
        self.table = _column(np.stack(tables))

    def to(self, device):
        self.grid = self.grid.to(device)
        return super().to(device)

    def _transform(self, z, a, shift, sigma2, b):
        counts = (z - shift) / a.clamp_min(1e-12)
        gat = 2 * torch.sqrt((counts + 0.375 + sigma2).clamp_min(0))
        return torch.where(a > 0, gat, z / torch.sqrt(b.clamp_min(1e-12)))

    def _expected(self, p, a, shift, sigma2, b):
        g = p.shape[0]
        counts = ((p - shift) / a.clamp_min(1e-12)).reshape(g, -1)
        grid = self.grid.to(p)
        inside = counts.clamp(0, float(grid[-1]))
        hi = torch.searchsorted(grid, inside.detach().contiguous()).clamp(1, len(grid) - 1)
        x0, x1 = grid[hi - 1], grid[hi]
        table = self.table.to(p)
        d0, d1 = table.gather(1, hi - 1), table.gather(1, hi)
        interp = d0 + (d1 - d0) * (inside - x0) / (x1 - x0)
        # Clamped so that the branch torch.where discards has no NaN gradient (below the grid).
        tail = 2 * torch.sqrt(counts.clamp_min(float(grid[-1])) + 0.125 + sigma2.reshape(g, 1))
        expected = torch.where(counts > grid[-1], tail, interp).reshape(p.shape)
        return torch.where(a > 0, expected, p / torch.sqrt(b.clamp_min(1e-12)))

    def __call__(self, prediction: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        a, b, shift, sigma2 = (_view(t.to(prediction), prediction) for t in (self.a, self.b, self.shift, self.sigma2))
        target = self._transform(observed, a, shift, sigma2, b)
        return ((target - self._expected(prediction, a, shift, sigma2, b)) ** 2).flatten(1).mean(1)


NOISE_LOSSES = ("vst-mse", "gaussian-nll", "poisson-nll")


def noise_loss(name: str, models: Sequence[NoiseModel]):
    """The loss ``name`` for G problems with these noise models (in the engine's units)."""
    if any(m.kind == "rician" for m in models):
        raise ValueError("the noise-model losses cover gaussian, poisson and poisson-gaussian noise, not rician")
    a = [m.a for m in models]
    b = [m.b for m in models]
    if name == "poisson-nll":
        if any(ai <= 0 for ai in a):
            raise ValueError("poisson-nll needs signal-dependent noise (a > 0); this image's model is Gaussian")
        return PoissonNLL(a, [max(0.0, -bi / ai) for ai, bi in zip(a, b)])
    if name == "gaussian-nll":
        return GaussianNLL(a, b)
    if name == "vst-mse":
        return VstMSE(a, b)
    raise ValueError(f"unknown noise loss {name!r}; choose one of {', '.join(NOISE_LOSSES)}")
