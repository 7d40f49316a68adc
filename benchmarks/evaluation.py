"""Stopping rules for evaluation only: the quality harness scores the oracle and several
automatic settings over one fit. Not part of the library (it needs the ground truth)."""
from __future__ import annotations

from typing import Sequence

import torch

from napari_dip.core.stopping import OracleStop, StopSettings, VarianceStop


class EvaluationStop:
    """The oracle and automatic rules side by side over one fit (the quality harness's rule).

    Runs the full count. ``result()`` is the oracle's; ``autos[i].result()`` is what an
    automatic run with ``settings[i]`` would have returned (a rule's state stops changing
    once it is done), so one fit scores the oracle and several automatic settings.
    """

    needs_ground_truth = True

    def __init__(self, n_problems: int, settings: Sequence[StopSettings] = (StopSettings(),)):
        self.n = n_problems
        self.oracle = OracleStop(n_problems)
        self.autos = [VarianceStop(n_problems, s) for s in settings]

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None, loss: torch.Tensor | None = None) -> torch.Tensor:
        self.oracle.observe(iteration, output, candidate, psnr)
        for rule in self.autos:
            rule.observe(iteration, output, candidate, psnr, loss)
        return torch.zeros(self.n, dtype=torch.bool)

    def result(self) -> tuple[torch.Tensor, list[int]]:
        return self.oracle.result()


class GatedVarianceStop(VarianceStop):
    """ES-EMV whose minimum search starts, per problem, only once ``gate`` (a data-fit rule such
    as the discrepancy stop) has fired: before the fit explains the data down to the noise
    level, a variance minimum is a lull in a fit still learning the image, not the onset of
    noise fitting. A problem whose gate never fires returns its last chosen output."""

    def __init__(self, n_problems: int, settings: StopSettings, gate):
        super().__init__(n_problems, settings)
        self.gate = gate
        self._latest: tuple[int, torch.Tensor] | None = None

    def observe(self, iteration, output, candidate, psnr, loss=None):
        ready = self.gate.observe(iteration, output, candidate, psnr, loss)
        waiting = ~ready & ~self.done
        self.done |= waiting  # the parent's search skips problems marked done
        super().observe(iteration, output, candidate, psnr, loss)
        self.done &= ~waiting
        self._latest = (iteration, self._chosen(output, candidate))
        return self.done.clone()

    def result(self):
        out, its = super().result()
        missing = torch.isinf(self.best_variance)
        if out is None or self._latest is None or not bool(missing.any()):
            return out, its
        out = out.clone()
        out[missing.to(out.device)] = self._latest[1].detach()[missing.to(out.device)]
        return out, [self._latest[0] if m else i for m, i in zip(missing.tolist(), its)]
