"""How a denoising fit treats noise (``TaskConfig.noise``): the model of each slice, chosen,
estimated or given, carried into the fit's [0, 1] units, turned into the loss and reported.

- ``noise="gaussian"``: the squared error (Deep Image Prior's loss, no estimate) and the task's
  own stopping rule;
- ``"auto"``, ``"poisson-gaussian"``, ``"poisson"``: a model per slice from
  :func:`~napari_dip.core.noise_estimate.estimate_noise` in the units of the array given to
  the fit (or ``params`` for every slice), rescaled with the intensity map to [0, 1], fitted
  with :data:`NOISE_LOSS` (a batch whose models all come out Gaussian keeps the squared error);
- ``"rician"`` (MRI magnitude): the squared error, then the Rician bias of the fitted mean
  removed (:func:`~napari_dip.core.noise.rician_signal`).

Colour images get one model per slice: the channels' parameters averaged.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from .noise import NOISE_CHOICES, NoiseModel, model_from_params, rician_signal
from .noise_estimate import estimate_noise
from .noise_losses import NOISE_LOSSES, noise_loss
from .noise_stop import DiscrepancyStop, noise_levels
from .stopping import GatedVarianceStop, StopSettings

NOISE_LOSS = "vst-mse"
"""The loss for signal-dependent noise: the real-noise benchmark's choice (docs/real-noise.md)."""


@dataclass(frozen=True)
class NoiseSetup:
    """The noise option, given parameters (a, b) in the data's units, the loss for modelled noise."""

    noise: str = "gaussian"
    params: tuple[float, float] | None = None
    loss: str = NOISE_LOSS

    def __post_init__(self):
        if self.noise not in NOISE_CHOICES:
            raise ValueError(f"unknown noise model {self.noise!r}; choose one of {', '.join(NOISE_CHOICES)}")
        if self.loss not in NOISE_LOSSES:
            raise ValueError(f"unknown noise loss {self.loss!r}; choose one of {', '.join(NOISE_LOSSES)}")
        if self.params is not None:
            if len(self.params) != 2:
                raise ValueError(f"noise_params must be (a, b) of variance = a * x + b, got {self.params!r}")
            model_from_params(self.noise, *self.params)  # validates them

    @property
    def modelled(self) -> bool:
        return self.noise != "gaussian" or self.params is not None

    def rescaled(self, offset: float, scale: float) -> "NoiseSetup":
        """Given parameters carried to data scaled as ``(z - offset) / scale`` (a caller that
        scales a volume before fitting it slice by slice)."""
        if self.params is None:
            return self
        m = model_from_params(self.noise, *self.params).rescaled(offset, scale)
        return replace(self, params=(m.a, m.b))

    def model(self, slice_chw: np.ndarray) -> tuple[NoiseModel, dict]:
        """The model of one (C, H, W) slice in its units, and what :meth:`record` reports
        besides it: where it came from and, when estimated, the level-set statistics it was
        fitted to (every channel's mean and variance pairs, for the widget's plot)."""
        if self.params is not None:
            return model_from_params(self.noise, *self.params), {"noise_source": "given"}
        estimates = [estimate_noise(channel, self.noise) for channel in slice_chw]
        kind = Counter(e.model.kind for e in estimates).most_common(1)[0][0]
        a = 0.0 if kind in ("gaussian", "rician") else float(np.mean([e.model.a for e in estimates]))
        levels = {"means": [round(float(x), 6) for e in estimates for x in e.means],
                  "variances": [round(float(v), 6) for e in estimates for v in e.variances]}
        return (NoiseModel(kind, a, float(np.mean([e.model.b for e in estimates]))),
                {"noise_source": "estimated", "noise_levels": levels})

    def loss_for(self, models: list[NoiseModel], offset: float, scale: float):
        """The fit's loss for a batch of slices scaled by ``(z - offset) / scale`` (None: MSE)."""
        unit = [m.rescaled(offset, scale) for m in models]
        if all(m.kind in ("gaussian", "rician") for m in unit):
            return None
        # One loss per batch: Gaussian slices among modelled ones take it with a = 0 (their MSE).
        return noise_loss(self.loss, [NoiseModel("poisson-gaussian", m.a, m.b) for m in unit])

    def stop_rule(self, models: list[NoiseModel], observed, offset: float, scale: float, settings: StopSettings):
        """The automatic rule for a batch of slices scaled by ``(z - offset) / scale``, on the
        fitted ``observed`` (G, C, H, W): with a signal-dependent part, the discrepancy stop
        (:mod:`.noise_stop`); all Gaussian, the variance rule (``settings``) searching for its
        minimum only once the residual has reached the estimated noise level (an earlier minimum
        is a lull in a fit still learning the image, docs/speed.md); None (the task's own rule)
        when any is Rician."""
        unit = [m.rescaled(offset, scale) for m in models]
        if any(m.kind == "rician" for m in unit):
            return None
        gate = DiscrepancyStop(observed, noise_levels(observed, unit))
        if all(m.kind == "gaussian" for m in unit):
            return GatedVarianceStop(len(unit), settings, gate)
        return gate

    @staticmethod
    def keeps_code_noise(models: list[NoiseModel]) -> bool:
        """Whether a batch keeps the preset's code noise at every size (``code_noise_side``
        off): any slice not called Gaussian. On four real-noise frames at 512 x 512 the smaller
        code noise of large Gaussian fits won on two and lost on two, by up to 0.9 dB
        (docs/real-noise.md); Rician fits are not measured."""
        return any(m.kind != "gaussian" for m in models)

    @staticmethod
    def finish(restored: np.ndarray, model: NoiseModel, offset: float, scale: float) -> np.ndarray:
        """A slice's output in [0, 1] units, with the Rician bias removed for Rician slices."""
        if model.kind != "rician":
            return restored
        signal = rician_signal(np.asarray(restored, np.float64) * scale + offset, model.sigma)
        return ((signal - offset) / scale).astype(np.float32)

    @staticmethod
    def record(model: NoiseModel, info: dict) -> dict:
        """A slice's report entries: ``noise`` (kind, a, b) and :meth:`model`'s ``info``."""
        return {"noise": model.as_dict(), **info}
