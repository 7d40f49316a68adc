"""Losses: the data fidelity L(A(G(z)), y) a fit minimises, with the noise model it assumes.

A loss is any object with

- ``name``: a short name (the key it is registered under in :data:`LOSSES`);
- ``__call__(prediction, observed) -> (G,)``: one value per problem, where ``prediction``
  is the operator's output A(G(z)) and ``observed`` the observations y, both (G, C, h, w)
  float32 in the engine's [0, 1] units; it must be differentiable in ``prediction``. The fit
  sums the G values and steps on their gradient, so every problem sees only its own;
- ``rows(index)`` and ``to(device)``, as :class:`~napari_dip.core.slots.PerProblem` gives
  them: a loss with parameters per problem (the gain and read noise of each slice, say)
  keeps them as (G, ...) tensors listed in ``per_problem``, and the fit row-selects them
  with the problems.

The values are also what the stopping rules read (the data-fit rule of warm starts) and
what the loss-jump fallback compares (a jump is a value above ``loss_jump`` times the last
one): a loss should be >= 0 and 0 at a perfect fit (a negative log-likelihood minus its
minimum, the deviance, rather than the raw likelihood). A variance-stabilised fit is a loss
too: transform both sides, then take the mean squared error.

Register a new loss with ``LOSSES.register("name", Factory)``; build one with
:func:`make_loss`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .slots import PerProblem, Registry


@runtime_checkable
class Loss(Protocol):
    """The loss protocol (see the module docstring)."""

    name: str

    def __call__(self, prediction: torch.Tensor, observed: torch.Tensor) -> torch.Tensor: ...

    def rows(self, index: torch.Tensor) -> "Loss": ...

    def to(self, device: torch.device | str) -> "Loss": ...


LOSSES: Registry[Loss] = Registry("loss")


@LOSSES.register("mse")
class MSE(PerProblem):
    """Mean squared error per problem: the negative log-likelihood of additive Gaussian
    noise of a constant variance, up to scale and offset (Deep Image Prior's loss)."""

    name = "mse"

    def __call__(self, prediction: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return ((prediction - observed) ** 2).flatten(1).mean(1)


def make_loss(name: str = "mse", **params) -> Loss:
    """The loss registered as ``name``, built with ``params``."""
    return LOSSES.make(name, **params)


from . import noise_losses  # noqa: E402,F401  (registers the noise-model losses)
