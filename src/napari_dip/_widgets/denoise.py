"""Denoise (Deep Image Prior): the observed image is the noisy image (A = identity); or, to
compare, a classical denoiser (VST+BM3D, non-local means) under the same noise model."""
from __future__ import annotations

from magicgui.widgets import ComboBox, Label

from .curve import NoisePlot
from .form import TaskForm

NOISE_CHOICES = ("auto", "gaussian", "poisson-gaussian", "poisson", "rician")  # core.noise, without torch
METHODS = (("Deep Image Prior", "dip"), ("VST+BM3D (classical)", "vst-bm3d"),
           ("non-local means (classical)", "nlm"))  # baselines.BASELINES
METHOD_TITLES = {"vst-bm3d": "VST+BM3D", "nlm": "NLM"}


NOT_YET = "estimated from the image when Run starts"  # the readout before the first run


class DenoiseWidget(TaskForm):
    """Dock widget: denoise an image layer, a slice, a range or a whole stack."""

    task = "denoise"
    title = "DIP denoise"

    def task_fields(self) -> list:
        readout = self._readout()
        return [ComboBox(name="method", choices=METHODS, value="dip",
                         tooltip="Deep Image Prior, or a classical denoiser to compare with under the same "
                                 "noise model (the network, iteration and stopping settings do not apply "
                                 "to it; VST+BM3D needs pip install 'napari-dip[baselines]')"),
                ComboBox(name="noise", choices=NOISE_CHOICES, value="auto",
                         tooltip="Noise model: auto (estimated per slice: Gaussian noise is fitted as with "
                                 "gaussian, shot noise with its model); gaussian (the squared error); "
                                 "poisson-gaussian, poisson: variance a x + b estimated per slice and used "
                                 "as the loss (fluorescence, EM photon noise); rician: MRI magnitude images"),
                readout]

    @staticmethod
    def _readout() -> Label:
        label = Label(name="noise_model", label="noise model", value=NOT_YET,
                      tooltip="The noise model the last run estimated (a: signal-dependent variance "
                              "factor, b: constant variance), in the image's units")
        label.native.setWordWrap(True)  # the dock is narrow: the model wraps instead of being cut
        label.native.setMinimumHeight(2 * label.native.fontMetrics().lineSpacing() + 2)
        return label

    def side_plots(self) -> list:
        self.noise_plot = NoisePlot()
        return [self.noise_plot]

    def config_options(self) -> dict:
        return {**super().config_options(), "noise": self["noise"].value}

    def make_job(self):
        job = super().make_job()
        if self["method"].value != "dip":
            job.title = METHOD_TITLES[self["method"].value]  # names the result layer
        return job

    def events(self, image, channel_axis, ground_truth, device, extra):
        method = self["method"].value
        if method == "dip":
            return super().events(image, channel_axis, ground_truth, device, extra)
        noise = self["noise"].value
        from ..baselines import require_bm3d, require_skimage

        require_bm3d() if method == "vst-bm3d" else require_skimage()  # one clear line before the job

        def events(out, cancel):
            from ..api import SliceDone
            from ..arrays import as_slices, layout_of
            from ..baselines import denoise_baseline
            from .runner import callback_events

            buffer = as_slices(out, layout_of(out, channel_axis))

            def call(callback):
                return denoise_baseline(image, method, noise=noise, channel_axis=channel_axis, cancel=cancel,
                                        on_slice=lambda *done: callback(done))

            done = callback_events(call)
            while True:
                try:
                    index, count, output, records = next(done)
                except StopIteration as stop:
                    return stop.value
                buffer[index] = output
                yield SliceDone(index, index, count, output, records[0])
        return events

    def finish(self, output, report, layer) -> None:
        """Show the model of the first slice that has one (the report has every slice's)."""
        models = [s for s in (report or {}).get("slices", []) if "noise" in s]
        if not models:
            text = tip = "gaussian (squared error)" if report else NOT_YET
        else:
            m = models[0]["noise"]
            text = f"{m['kind']}: a={m['a']:.4g}, b={m['b']:.4g}"
            more = f"; slice {models[0]['slice']} of {len(models)} in the report" if len(models) > 1 else ""
            tip = f"{text}: variance = a * intensity + b in the image's units{more}"
        try:
            self["noise_model"].value = text
            self["noise_model"].tooltip = tip
            self.noise_plot.show_model(models[0] if models else None)
        except RuntimeError:  # the dock was closed during the run; the model is in the metadata
            pass
