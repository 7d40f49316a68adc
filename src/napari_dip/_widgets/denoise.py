"""Denoise (Deep Image Prior): the observed image is the noisy image (A = identity)."""
from __future__ import annotations

from magicgui.widgets import ComboBox, Label

from .form import TaskForm

NOISE_CHOICES = ("gaussian", "auto", "poisson-gaussian", "poisson", "rician")  # core.noise, without torch


class DenoiseWidget(TaskForm):
    """Dock widget: denoise an image layer, a slice, a range or a whole stack."""

    task = "denoise"
    title = "DIP denoise"

    def task_fields(self) -> list:
        return [ComboBox(name="noise", choices=NOISE_CHOICES, value="gaussian",
                         tooltip="Noise model: gaussian (the squared error); auto, poisson-gaussian, poisson: "
                                 "variance a x + b estimated per slice and used as the loss (fluorescence, "
                                 "EM photon noise); rician: MRI magnitude images"),
                Label(name="noise_model", label="noise model", value="",
                      tooltip="The noise model the last run estimated (a: signal-dependent variance "
                              "factor, b: constant variance), in the image's units")]

    def config_options(self) -> dict:
        return {**super().config_options(), "noise": self["noise"].value}

    def finish(self, output, report, layer) -> None:
        """Show the model of the first slice that has one (the report has every slice's)."""
        models = [s for s in (report or {}).get("slices", []) if "noise" in s]
        if not models:
            text = "gaussian (squared error)" if report else ""
        else:
            m = models[0]["noise"]
            more = f" (slice {models[0]['slice']}; {len(models)} slices in the report)" if len(models) > 1 else ""
            text = f"{m['kind']}: a={m['a']:.4g}, b={m['b']:.4g} in the image's units{more}"
        try:
            self["noise_model"].value = text
        except RuntimeError:  # the dock was closed during the run; the model is in the metadata
            pass
