"""Deep Decoder: fit under-parameterised decoders to one 2D slice (napari_dip.decoder.fit_decoder).

Fits R x C patches and N ensemble members at once; the result layer is the members' mean, and
the members, the per-pixel spread (standard deviation) and the per-patch outputs can be added
as layers.
"""
from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from .form import TaskForm
from .runner import callback_events

# Form presets: "fast" for a CPU, "report" the MRI report's best setting (k 96, s 8, l 6).
PRESETS = {
    "fast": {"channels": 64, "blocks": 6, "scale": 16, "code": "blurred", "iterations": 2000, "lr": 0.01},
    "report": {"channels": 96, "blocks": 6, "scale": 8, "code": "blurred", "iterations": 5000, "lr": 0.01},
}


class DeepDecoderWidget(TaskForm):
    """Dock widget: fit or denoise the current slice with Deep Decoders (patch grid, ensemble)."""

    task = "decoder"
    title = "Deep Decoder"
    presets = tuple(PRESETS)

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self["stopping"].choices = ("fixed", "oracle")
        self["stopping"].value = "fixed"
        self["scope"].choices = ("current slice",)
        self._advanced.remove(self["code_noise"])  # decoders fit without code noise

    def task_fields(self) -> list:
        return [
            ComboBox(name="goal", choices=("fit", "denoise"), value="fit",
                     tooltip="fit: represent the image (compression); denoise: the same fit, "
                             "read as a denoiser"),
            SpinBox(name="channels", label="channels k", min=1, max=1024),
            SpinBox(name="blocks", label="blocks l", min=1, max=12),
            ComboBox(name="scale", label="scale s", choices=(1, 2, 4, 8, 16, 32, 64),
                     tooltip="The code is H/s x W/s; the blocks upsample it back to H x W"),
            ComboBox(name="code", choices=("uniform", "blurred", "perlin")),
            SpinBox(name="patch_rows", label="patch rows", min=1, max=16, value=1),
            SpinBox(name="patch_cols", label="patch columns", min=1, max=16, value=1),
            SpinBox(name="ensemble", label="ensemble size", min=1, max=32, value=1,
                    tooltip="Independently initialised decoders fitted at once; the result is their mean"),
            CheckBox(name="add_members", label="add members", value=False),
            CheckBox(name="add_spread", label="add spread (std)", value=True),
            CheckBox(name="add_patches", label="add patch outputs", value=False),
        ]

    def network_fields(self) -> list:
        return [ComboBox(name="upsample", choices=("bilinear", "nearest"), value="bilinear"),
                CheckBox(name="code_3d", label="3D code", value=False,
                         tooltip="Channels interpolated between two noise images (Perlin: a 3D volume)"),
                FloatSpinBox(name="feature_size", label="Perlin feature size", min=0.5, max=256.0,
                             value=4.0)]

    def stack_fields(self) -> list:
        return []  # one slice at a time

    def preset_values(self) -> dict:
        return dict(PRESETS[self["preset"].value])

    def make_job(self):
        job = super().make_job()
        if job.layout.n_slices != 1:
            raise ValueError("the Deep Decoder fits one 2D slice at a time; use scope 'current slice'")
        return job

    def events(self, image, channel_axis, ground_truth, device, extra):
        v = self.values()
        plane = image.shape[-3:] if channel_axis is not None else image.shape[-2:]
        grid, members = (v["patch_rows"], v["patch_cols"]), v["ensemble"]
        options = dict(task=v["goal"], channels=v["channels"], blocks=v["blocks"], scale=int(v["scale"]),
                       upsample=v["upsample"], code=v["code"], code_3d=v["code_3d"],
                       feature_size=v["feature_size"], patches=f"{grid[0]}x{grid[1]}", ensemble=members,
                       iterations=v["iterations"], lr=v["lr"], stop=v["stopping"], seed=v["seed"],
                       precision=v["precision"], device=device,
                       channel_axis=None if channel_axis is None else -1)
        img = image.reshape(plane)
        truth = None if ground_truth is None else ground_truth.reshape(plane)

        def events(out, cancel):
            from .. import decoder
            from ..api import SliceDone, SliceProgress

            gen = callback_events(lambda callback: decoder.fit_decoder(
                img, ground_truth=truth, callback=callback, cancel=cancel, **options))
            while True:
                try:
                    progress = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                yield SliceProgress(0, 0, 1, _summary(progress, grid, members, decoder))
            out[...] = result.output.reshape(out.shape)
            report = result.report
            record = {"slice": 0, "iterations": report["iterations"], "seconds": report["seconds"]}
            if "mean" in report:
                record.update(psnr=report["mean"]["psnr"], ssim=report["mean"]["ssim"])
            partial = bool(report["cancelled"])
            if partial:
                record["partial"] = True
            yield SliceDone(0, 0, 1, out, record)
            return result, {**report, "slices": [record], "partial": partial}
        return events

    def finish(self, result, report, layer) -> None:
        """Add the members, the spread and the patch outputs as layers, as asked."""
        v = self.values()
        base = layer.name
        if v["add_spread"] and v["ensemble"] > 1:
            self.viewer.add_image(result.std.reshape(layer.data.shape), name=f"{base} spread (std)",
                                  colormap="magma", rgb=layer.rgb, **_geometry(layer),
                                  metadata={"source": base, "what": "per-pixel std across members"})
        if v["add_members"] and v["ensemble"] > 1:
            self.viewer.add_image(result.members.reshape(-1, *layer.data.shape), name=f"{base} members",
                                  rgb=layer.rgb, contrast_limits=layer.contrast_limits,
                                  **_geometry(layer, "member"), metadata={"source": base})
        if v["add_patches"] and len(result.patches) > 1:
            self.viewer.add_image(np.stack(result.patches), name=f"{base} patches", rgb=layer.rgb,
                                  contrast_limits=layer.contrast_limits, **_geometry(layer, "patch"),
                                  metadata={"source": base, "order": "row by row",
                                            "patch_metrics": report.get("patch_metrics")})


def _geometry(layer, new_axis: str | None = None) -> dict:
    """The layer's scale, translate, units and labels, with a leading ``new_axis`` if given."""
    geo = {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
           "units": tuple(str(u) for u in layer.units), "axis_labels": tuple(layer.axis_labels)}
    if new_axis is None:
        return geo
    return {"scale": (1.0, *geo["scale"]), "translate": (0.0, *geo["translate"]),
            "units": ("pixel", *geo["units"]), "axis_labels": (new_axis, *geo["axis_labels"])}


def _summary(progress, grid, members, decoder):
    """One slice's progress from G = members x patches fits: mean loss/PSNR/SSIM, stitched preview."""
    from ..core.fit import Progress

    mean = (lambda xs: None if xs is None else [float(np.mean(xs))])
    preview = None
    if progress.preview is not None:
        p = progress.preview
        preview = decoder._stitch(p.reshape(members, grid[0] * grid[1], *p.shape[1:]), grid).mean(0)[None]
    return Progress(progress.iteration, progress.total, mean(progress.loss), psnr=mean(progress.psnr),
                    ssim=mean(progress.ssim), preview=preview)
