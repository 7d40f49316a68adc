"""Stopping rules: when to stop fitting and which output to return.

A rule sees, after every iteration, the raw network output and the candidate result (the
moving average of outputs when averaging is on) for each of the G problems, and the PSNR of
the candidate against a ground truth when one is given. It says which problems are done and
keeps, per problem, the output it will return.
"""
from __future__ import annotations

import torch

STOP_RULES = ("fixed", "oracle", "auto")


class FixedStop:
    """Run the full iteration count; return the last candidate."""

    needs_ground_truth = False

    def __init__(self, n_problems: int):
        self.n = n_problems
        self._best: torch.Tensor | None = None
        self._iteration = 0

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None) -> torch.Tensor:
        self._best, self._iteration = candidate, iteration
        return torch.zeros(self.n, dtype=torch.bool)

    def result(self) -> tuple[torch.Tensor, list[int]]:
        return self._best, [self._iteration] * self.n


class OracleStop:
    """Return, per problem, the candidate with the best PSNR against the ground truth.

    For evaluation only: it needs the answer. Runs the full iteration count.
    """

    needs_ground_truth = True

    def __init__(self, n_problems: int):
        self.n = n_problems
        self._best: torch.Tensor | None = None
        self._best_psnr = torch.full((n_problems,), -float("inf"))
        self._iterations = [0] * n_problems

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None) -> torch.Tensor:
        if psnr is None:
            raise ValueError("the 'oracle' stopping rule needs a ground truth")
        psnr = psnr.detach().cpu()
        better = psnr > self._best_psnr
        if self._best is None:
            self._best = candidate.clone()
        elif better.any():
            self._best[better.to(candidate.device)] = candidate[better.to(candidate.device)]
        for g in torch.nonzero(better).flatten().tolist():
            self._iterations[g] = iteration
        self._best_psnr = torch.maximum(self._best_psnr, psnr)
        return torch.zeros(self.n, dtype=torch.bool)

    def result(self) -> tuple[torch.Tensor, list[int]]:
        return self._best, list(self._iterations)


def make_stop_rule(name: str, n_problems: int):
    """A fresh rule by name. ``auto`` currently runs the full count (as ``fixed``)."""
    if name == "fixed" or name == "auto":
        return FixedStop(n_problems)
    if name == "oracle":
        return OracleStop(n_problems)
    raise ValueError(f"unknown stopping rule {name!r}; choose one of {', '.join(STOP_RULES)}")
