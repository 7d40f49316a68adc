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

