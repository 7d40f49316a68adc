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


@LOSSES.register("deblur-mse")
class DeblurMSE(PerProblem):
    """Mean squared error of the residual seen through the filter (|H|^2 + eps)^(-1/2), H the
    PSF's transfer function: deconvolution's default loss (the same Gaussian noise model as
    :class:`MSE`).

    Through a blur, plain MSE's gradient damps an error at frequency f by |H(f)|^2, so the
    fine detail deconvolution is for is fitted last: with a Gaussian PSF of sigma 2 a fit
    was still far from its best after 1500 iterations (docs/usage.md, "Deconvolution"). The
    filter undoes that damping down to the floor ``eps`` (relative to the zero frequency,
    which it keeps), so frequencies the blur all but erased, where the noise dominates, are
    amplified at most 1/sqrt(eps) times. The filter is invertible: the images that fit the
    data exactly are MSE's; the path to them, and so an early-stopped result, changes. The
    residual is mirrored (even extension, as the reflect boundary) before the FFT.
    ``psf`` is (kh, kw) or (G, 1, kh, kw), one per problem.
    """

    name = "deblur-mse"
    per_problem = ("psf",)

    def __init__(self, psf, eps: float = 0.01):
        psf = torch.as_tensor(psf, dtype=torch.float32)
        psf = psf[None, None] if psf.ndim == 2 else psf
        if psf.ndim != 4 or psf.shape[1] != 1 or not bool((psf.sum(dim=(-2, -1)) > 0).all()):
            raise ValueError(f"the PSF must be a (kh, kw) or (G, 1, kh, kw) array with a positive sum, "
                             f"got shape {tuple(psf.shape)}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise ValueError(f"eps must be a number in (0, 1], got {eps!r}")
        self.psf = psf / psf.sum(dim=(-2, -1), keepdim=True)
        self.eps = float(eps)
        self._filter = None  # (psf, size, weights) of the last call

    def weights(self, height: int, width: int) -> torch.Tensor:
        """The filter (G or 1, 1, 2 height, width + 1) on the rfft2 grid of the mirrored
        residual, 1 at the zero frequency."""
        if self._filter is not None and self._filter[0] is self.psf and self._filter[1] == (height, width):
            return self._filter[2]
        kh, kw = self.psf.shape[-2:]
        kernel = self.psf.new_zeros(*self.psf.shape[:2], 2 * height, 2 * width)
        kernel[..., :kh, :kw] = self.psf
        kernel = torch.roll(kernel, (-(kh // 2), -(kw // 2)), dims=(-2, -1))  # centred on pixel 0
        power = torch.fft.rfft2(kernel).abs() ** 2
        weights = ((1 + self.eps) / (power + self.eps)).sqrt()
        self._filter = (self.psf, (height, width), weights)
        return weights

    def __call__(self, prediction: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        r = prediction - observed
        h, w = r.shape[-2:]
        r = torch.cat([r, r.flip(-1)], dim=-1)
        r = torch.cat([r, r.flip(-2)], dim=-2)  # mirrored: a periodic image of size (2h, 2w)
        filtered = torch.fft.irfft2(torch.fft.rfft2(r) * self.weights(h, w), s=(2 * h, 2 * w))
        return (filtered ** 2).flatten(1).mean(1)


def make_loss(name: str = "mse", **params) -> Loss:
    """The loss registered as ``name``, built with ``params``."""
    return LOSSES.make(name, **params)


from . import noise_losses  # noqa: E402,F401  (registers the noise-model losses)
