"""The form every widget shares: image, preset, iterations, stopping, seed, device, scope,
ground truth, an "Advanced" section, Run/Stop, a progress bar and a curve.

Controls have stable names; ``widget["iterations"].value = 200`` and
``widget["run"].clicked.emit()`` work from scripts and tests. Subclasses add task fields
(``task_fields``) and say how to build the job's events (``events``).
"""
from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget
from superqt import QCollapsible

from .checks import check_input
from .curve import CurvePlot
from .layers import SCOPES, region
from .cost import start_estimate
from .runner import Job, JobRunner, available_devices, initial_result

ARCHITECTURES = ("skip", "resunet")
ACTIVATIONS = ("leakyrelu", "relu", "swish", "mish")
UPSAMPLERS = ("bilinear", "nearest", "transposed")
DOWNSAMPLERS = ("stride", "max", "avg")
PADDINGS = ("reflection", "zero")
PRECISIONS = ("fp32", "bf16", "auto")
STOP_RULES = ("auto", "fixed", "oracle")


class Asked(ValueError):
    """A job not started because a notification asks the user what to do (not shown again)."""


def layer_choices(viewer, kinds):
    """A magicgui choices callable listing the viewer's layers of the given types by name."""
    def choices(_widget=None):
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kinds)]
    return choices


class TaskForm(QWidget):
    """Base dock widget; subclasses set ``task``, ``title`` and may add fields."""

    task = "denoise"
    title = "DIP denoise"
    presets = ("fast", "paper")
    preset_tooltip = "'fast': a smaller network for CPUs; 'paper': the Deep Image Prior paper's settings"

    def __init__(self, napari_viewer):
        from napari.layers import Image

        super().__init__()
        self.viewer = napari_viewer
        self._form = Container(name="form", labels=True)
        self._form.extend([
            ComboBox(name="image", label="image", choices=layer_choices(napari_viewer, Image),
                     tooltip="Image layer to restore (2D grey, RGB, or a stack)"),
            ComboBox(name="preset", choices=self.presets, value=self.presets[0], tooltip=self.preset_tooltip),
            *self.task_fields(),
            SpinBox(name="iterations", min=1, max=100_000, step=50, tooltip="Maximum iterations per slice"),
            ComboBox(name="stopping", choices=STOP_RULES, value="auto",
                     tooltip="auto: stop when the fit stops improving; fixed: all iterations; "
                             "oracle: best PSNR against the ground truth (evaluation only)"),
            SpinBox(name="seed", min=0, max=2**31 - 1, value=0, tooltip="Seed of the network and code"),
            ComboBox(name="device", choices=available_devices(), value="auto",
                     tooltip="Where the fit runs: auto picks a GPU when there is one (CUDA or Apple "
                             "mps), else the CPU; only devices present are listed"),
            ComboBox(name="scope", choices=SCOPES, value="current slice",
                     tooltip="Stacks: the slice shown, every slice, or a range along the scrolled axis"),
            SpinBox(name="first", label="from slice", min=0, max=0, visible=False,
                    tooltip="First slice of the range (data index along the scrolled axis, counted from 0)"),
            SpinBox(name="last", label="to slice", min=0, max=0, visible=False,
                    tooltip="Last slice of the range, included"),
            ComboBox(name="ground_truth", label="ground truth", nullable=True,
                     choices=layer_choices(napari_viewer, Image),
                     tooltip="Optional clean image: PSNR and SSIM are plotted and stored"),
        ])
        self._advanced = Container(name="advanced", labels=True)
        self._advanced.extend([
            *self.network_fields(),
            *self.stopping_fields(),
            FloatSpinBox(name="code_noise", label="code noise", min=0.0, max=1.0, step=0.01,
                         tooltip="Standard deviation of the noise added to the network's input code at "
                                 "every iteration (a regulariser; 0: a fixed code). The fast denoising "
                                 "preset uses it up to 128x128 pixels and scales it by 128² / pixels for "
                                 "larger images with Gaussian noise, where it would slow the fit down"),
            FloatSpinBox(name="lr", label="learning rate", min=1e-5, max=1.0, step=0.001,
                         tooltip="Adam's step size; lower it if the loss jumps or the result turns "
                                 "NaN, raise it if the fit is slow"),
            ComboBox(name="precision", choices=PRECISIONS, value="auto",
                     tooltip="auto: bf16 where it is faster (GPUs with bf16; CPUs with AMX/AVX512-BF16 "
                             "for images of 128x128 and more), fp32 otherwise"),
            FloatSpinBox(name="preview_every", label="preview every (s)", min=0.0, max=3600.0, value=5.0,
                         step=1.0, tooltip="Seconds between updates of the result layer while fitting; "
                                           "the first comes after 2 s at most, until then the input stays "
                                           "in view (0: the result appears at the end only)"),
            *self.stack_fields(),
        ])
        self._buttons = Container(layout="horizontal", labels=False, widgets=[
            PushButton(name="run", text="Run",
                       tooltip="Start the job in the background (it waits in a queue while another job "
                               "of this viewer runs); the result is added as a new layer"),
            PushButton(name="stop", text="Stop", enabled=False,
                       tooltip="End the job at its next iteration; finished slices and the current "
                               "output are kept, marked partial"),
            PushButton(name="estimate", text="Estimate time",
                       tooltip="Time a few iterations of the job Run would start (same image, scope, "
                               "device and settings) and show the time per iteration and the job's "
                               "time at its iteration cap; nothing is added to the viewer")])
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        self.curve = CurvePlot()
        self.summary = QLabel()  # the last job's summary (e.g. the Deep Decoder's stability)
        self.summary.setWordWrap(True)
        self.summary.setVisible(False)
        plots = QWidget()  # the loss curve and, beside it, a task's own plots (e.g. the noise model)
        row = QHBoxLayout(plots)
        row.setContentsMargins(0, 0, 0, 0)
        for w in (self.curve, *self.side_plots()):
            row.addWidget(w)
        advanced = QCollapsible("Advanced")
        advanced.addWidget(self._advanced.native)
        layout = QVBoxLayout(self)
        for w in (self._form.native, advanced, self._buttons.native, self.progress, self.summary, plots):
            layout.addWidget(w)
        layout.addStretch(1)
        self.advanced_section = advanced
        self._preset_applied: dict = {}
        self._apply_preset()
        self._update_range()
        self.runner = JobRunner(napari_viewer, key=self.title, progress=self.progress, curve=self.curve,
                                summary=self.summary, on_state=self._set_state)
        self.destroyed.connect(self.runner.close)
        self["run"].clicked.connect(self.run)
        self["stop"].clicked.connect(self.runner.stop)
        self["estimate"].clicked.connect(self.estimate)
        self._estimating = None  # the estimate's worker while it runs
        self.last_estimate: float | None = None  # seconds at the cap, from the last estimate
        self["preset"].changed.connect(self._apply_preset)
        if "architecture" in self.control_names():
            self["architecture"].changed.connect(self._apply_preset)
        self["scope"].changed.connect(self._update_range)
        self["image"].changed.connect(self._update_range)

    # -- names ------------------------------------------------------------------------
    def __getitem__(self, name: str):
        for container in (self._form, self._advanced, self._buttons):
            for widget in container:
                if widget.name == name:
                    return widget
        raise KeyError(f"no control named {name!r}; controls: {', '.join(self.control_names())}")

    def control_names(self) -> list[str]:
        return [w.name for c in (self._form, self._advanced, self._buttons) for w in c]

    def reset_choices(self, *_) -> None:
        self._form.reset_choices()
        self._update_range()

    # -- hooks for subclasses -----------------------------------------------------------
    def task_fields(self) -> list:
        return []

    def side_plots(self) -> list:
        """Qt widgets shown beside the loss curve (made once, in ``__init__``)."""
        return []

    def network_fields(self) -> list:
        """The network's knobs in the Advanced section (here: the DIP skip network's)."""
        return [ComboBox(name="architecture", choices=ARCHITECTURES, value="skip",
                         tooltip="skip: the Deep Image Prior paper's network; resunet: a residual "
                                 "U-Net with dropout (judged with dropout off)"),
                ComboBox(name="activation", choices=ACTIVATIONS,
                         tooltip="Non-linearity after each convolution (the paper: leaky ReLU)"),
                ComboBox(name="upsample", choices=UPSAMPLERS,
                         tooltip="How the decoder half enlarges its features: bilinear or nearest "
                                 "interpolation, or a learned transposed convolution"),
                ComboBox(name="downsample", choices=DOWNSAMPLERS,
                         tooltip="How the encoder half shrinks its features: strided convolution, "
                                 "max or average pooling"),
                ComboBox(name="padding", choices=PADDINGS,
                         tooltip="Border handling of the convolutions: reflection avoids dark rims; "
                                 "zero padding is the classic choice"),
                ComboBox(name="code", choices=("uniform", "meshgrid"),
                         tooltip="The network's fixed random input: uniform noise, or a meshgrid of "
                                 "the coordinates (smoother results)")]

    def stopping_fields(self) -> list:
        """Settings of the automatic stopping rule (Advanced section)."""
        return [SpinBox(name="stop_window", label="auto stop: window", min=2, max=10_000,
                        tooltip="Span of the moving variance of the outputs"),
                SpinBox(name="stop_patience", label="auto stop: patience", min=1, max=100_000,
                        tooltip="Stop after this many iterations without a new variance minimum"),
                SpinBox(name="stop_min_iterations", label="auto stop: at least", min=0, max=100_000,
                        tooltip="Never stop before this many iterations")]

    def stack_fields(self) -> list:
        """How the slices of a stack are fitted (Advanced section)."""
        return [SpinBox(name="batch_size", label="slices at once", min=0, max=1024, value=0,
                        tooltip="Slices fitted together as independent networks (0: as many as "
                                "memory allows); in fp32 the result per slice is the same; with precision "
                                "auto a large batch may switch to bf16"),
                CheckBox(name="warm_start", label="warm start", value=False,  # set by the preset
                         tooltip="Fit the first slice cold, then start each batch from the weights fitted "
                                 "to the slice before; a warm slice stops once it fits its data as well as "
                                 "the first slice did (about a third of the iterations)")]

    def preset_values(self) -> dict:
        """Form values implied by the chosen preset (iterations and the engine knobs)."""
        from ..core.task import get_preset

        p = get_preset(self.task, self["preset"].value, factor=self.factor(),
                       architecture=self["architecture"].value)
        net = p.network
        return {"iterations": p.fit.iterations, "activation": net.activation, "upsample": net.upsample,
                "downsample": net.downsample, "padding": net.pad, "code": p.code,
                "code_noise": p.fit.code_noise, "lr": p.fit.lr, "stop_window": p.stopping.window,
                "stop_patience": p.stopping.patience, "stop_min_iterations": p.stopping.min_iterations,
                "warm_start": p.warm_start}

    def factor(self) -> int:
        return 1

    def config_options(self) -> dict:
        """Keyword arguments for ``make_config``."""
        v = self.values()
        return dict(preset=v["preset"], factor=self.factor(), iterations=v["iterations"], lr=v["lr"],
                    code_noise=v["code_noise"], stop=v["stopping"], seed=v["seed"],
                    precision=v["precision"], preview_every=1 if v["preview_every"] > 0 else 0, code=v["code"],
                    architecture=v["architecture"],
                    network={"activation": v["activation"], "upsample": v["upsample"],
                             "downsample": v["downsample"], "pad": v["padding"]},
                    stopping={"window": v["stop_window"], "patience": v["stop_patience"],
                              "min_iterations": v["stop_min_iterations"]})

    def extra_inputs(self, layer, block_index) -> dict:
        """Task inputs besides the image and ground truth (e.g. the inpainting mask)."""
        return {}

    def events(self, image, channel_axis, ground_truth, device, extra):
        """The job's event generator factory (see runner.EventsFactory): DIP through api.run."""
        options, task = self.config_options(), self.task
        batch_size, warm_start = (self["batch_size"].value or None), self["warm_start"].value

        def events(out, cancel):
            from .. import api

            config = api.make_config(task, **options)
            if config.stop == "oracle" and ground_truth is None:
                raise ValueError("stopping 'oracle' needs a ground truth layer (it is for evaluation only)")
            return (yield from api.run(config, image, channel_axis=channel_axis, ground_truth=ground_truth,
                                       device=device, out=out, cancel=cancel, batch_size=batch_size,
                                       warm_start=warm_start, **extra))
        return events

    def finish(self, output, report, layer) -> None:
        """Called with the result when the job ends (subclasses add layers here).

        It runs after the dock may have been closed: read the job's settings from
        ``layer.metadata["settings"]``, not from the form.
        """

    summary_of = None  # report -> (text, is a warning) shown under the progress bar, if set

    def kept_pixels(self, layer, block_index):
        """(where, values) of output pixels to keep from the input, or None (see inpainting)."""
        return None

    # -- actions -------------------------------------------------------------------------
    def values(self) -> dict:
        out = {}
        for c in (self._form, self._advanced):
            for w in c:
                if hasattr(w, "value") and not isinstance(w, (PushButton, Label)):
                    out[w.name] = getattr(w.value, "name", w.value)
        return out

    def make_job(self) -> Job:
        """Read the form into a Job; raises ValueError with a clear message on bad input."""
        layer = self["image"].value
        if layer is None:
            raise ValueError("choose an image layer (add one with File > Open or File > Open Sample)")
        if layer.multiscale:
            raise ValueError(f"{layer.name!r} is a multiscale (pyramid) layer; add its full-resolution "
                             "level, or a crop of it, as a plain image layer")
        v = self.values()
        reg = region(layer, self.viewer, v["scope"], v["first"], v["last"])
        channel_axis = -1 if layer.rgb else None
        image = np.asarray(layer.data[reg.index])
        check_input(layer, image)
        truth_layer = self["ground_truth"].value
        truth = None
        if truth_layer is not None:
            if truth_layer.data.ndim != layer.data.ndim:
                raise ValueError(f"the ground truth layer {truth_layer.name!r} has {truth_layer.data.ndim} "
                                 f"dimensions and the image layer {layer.name!r} {layer.data.ndim}; choose a "
                                 "ground truth of the image's shape (or none)")
            truth = np.asarray(truth_layer.data[reg.index])
            check_input(truth_layer, truth, "ground truth")
        extra = self.extra_inputs(layer, reg.index)
        events = self.events(image, channel_axis, truth, v["device"], extra)
        settings = {**v, "factor": self.factor(), "ground_truth": getattr(truth_layer, "name", None)}
        return Job(title=self.title, source=layer, image=image, channel_axis=channel_axis, region=reg,
                   events=events, settings=settings, factor=self.factor(), finish=self.finish,
                   summary=self.summary_of, keep=self.kept_pixels(layer, reg.index),
                   preview_seconds=float(v["preview_every"]))

    def run(self, *_):
        """Start a job from the form; show bad input as an error notification."""
        from napari.utils.notifications import show_error

        try:
            return self.runner.start(self.make_job())
        except (ValueError, RuntimeError, MemoryError) as err:
            self.progress.setFormat(f"not started: {err}")
            if not isinstance(err, Asked):
                show_error(f"{self.title}: {err}")
            return None

    def estimate(self, *_):
        """Time a few iterations of the job Run would start, in a worker thread, and show its
        price under the progress bar (see :mod:`.cost`)."""
        from napari.utils.notifications import show_error

        try:
            job = self.make_job()
        except (ValueError, RuntimeError, MemoryError) as err:
            self.progress.setFormat(f"not estimated: {err}")
            if not isinstance(err, Asked):
                show_error(f"{self.title}: {err}")
            return None
        shared = self.runner.registry.current is not None

        def done(seconds: float, line: str) -> None:
            self.last_estimate = seconds
            note = " · timed while another job ran: alone it is faster" if shared else ""
            self.summary.setText(f"Estimate: {line}{note}")
            self.summary.setStyleSheet("")
            self.summary.setVisible(True)

        def failed(err: BaseException) -> None:
            show_error(f"{self.title}: the estimate failed: {err}")

        def ended() -> None:
            self._estimating = None
            self["estimate"].enabled = True

        self["estimate"].enabled = False
        self.summary.setText("Estimate: timing a few iterations...")
        self.summary.setVisible(True)
        self._estimating = start_estimate(job.events, initial_result(job), stop=job.settings["stopping"],
                                          on_done=done, on_error=failed)
        self._estimating.finished.connect(ended)
        return self._estimating

    # -- form behaviour --------------------------------------------------------------------
    def _apply_preset(self, *_):
        """Load the preset's values into the form."""
        for name, value in self.preset_values().items():
            self[name].value = value
        self._preset_applied = {name: self[name].value for name in self.preset_values()}

    def _follow_preset(self) -> None:
        """The preset's values changed (e.g. with the factor): update only the fields the user left
        at the preset's value; what the user typed stays."""
        for name, value in self.preset_values().items():
            if name not in self._preset_applied or self[name].value == self._preset_applied[name]:
                self[name].value = value
                self._preset_applied[name] = self[name].value

    def _update_range(self, *_):
        layer = self["image"].value
        in_range = self["scope"].value == "range"
        n = 0
        if layer is not None and layer.ndim > 2:
            n = layer.data.shape[layer.ndim - 3] - 1
        for name in ("first", "last"):
            self[name].max = max(n, 0)
            self[name].visible = in_range
        if in_range and self["last"].value == 0:
            self["last"].value = n

    def _set_state(self, state: str) -> None:
        active = state in ("queued", "running", "stopping")
        self["run"].enabled = not active
        self["stop"].enabled = state in ("queued", "running")
