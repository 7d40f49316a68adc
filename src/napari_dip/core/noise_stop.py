"""The discrepancy stop: with a known noise model, stop when the fit explains the data down to
the noise.

The squared residual of a fit to the observed image, ``mean((f - y)**2)``, falls while the
network fits the signal; once it reaches the noise variance the model predicts,
``mean(a * y + b)`` (Morozov's discrepancy principle; ``y`` is an unbiased stand-in for the
clean image in ``a * x + b``), what is left to fit is noise. On the real-noise pairs the
predicted variance came within 6% of the residual of the clean average
(docs/real-noise.md).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .noise import NoiseModel
from .stopping import DataFitStop

DISCREPANCY_TAU = 1.0  # stop at tau times the predicted noise variance (docs/real-noise.md)
DISCREPANCY_SPAN = 25  # iterations of the residual's exponential moving average


def noise_levels(observed: torch.Tensor, models: Sequence[NoiseModel]) -> torch.Tensor:
    """The mean noise variance each problem's model predicts over its observed pixels, (G,),
    in the units of ``observed`` (the models in those units, see ``NoiseModel.rescaled``)."""
    levels = []
    for y, m in zip(observed.detach().double().cpu(), models):
        levels.append(float((m.a * y + m.b).clamp_min(0).mean()) if m.a > 0 else max(m.b, 0.0))
    return torch.tensor(levels, dtype=torch.float64)


class DiscrepancyStop(DataFitStop):
    """Stop each problem once its squared residual to ``observed`` (smoothed over ``span``
    iterations) falls to ``tau`` times its predicted noise variance ``levels``; return the
    candidate of that iteration. A problem that never gets there runs to the iteration limit
    and returns its last candidate (the data-fit rule, on the residual instead of the loss).
    """

    name = "discrepancy"

    def __init__(self, observed: torch.Tensor, levels, tau: float = DISCREPANCY_TAU,
                 span: int = DISCREPANCY_SPAN):
        levels = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
        if len(levels) != observed.shape[0]:
            raise ValueError(f"{observed.shape[0]} problems but {len(levels)} noise levels")
        super().__init__(observed.shape[0], tau * levels, span)
        self.observed = observed.detach()

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None, loss: torch.Tensor | None = None) -> torch.Tensor:
        y = self.observed = self.observed.to(output.device)  # moved once
        residual = ((output.detach()[..., : y.shape[-2], : y.shape[-1]].float() - y) ** 2).flatten(1).mean(1)
        return super().observe(iteration, output, candidate, psnr, residual)
