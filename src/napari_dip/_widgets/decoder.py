"""Deep Decoder: fit under-parameterised decoders slice by slice (napari_dip.decoder.fit_decoder).

Fits R x C patches and N ensemble members of a slice at once; the result layer is the members'
mean, and the members, the per-pixel spread (standard deviation) and, for one slice, the
per-patch outputs can be added as layers.
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
    """Dock widget: fit or denoise slices with Deep Decoders (patch grid, ensemble)."""

    task = "decoder"
    title = "Deep Decoder"
    presets = tuple(PRESETS)

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self["stopping"].choices = ("fixed", "oracle")
        self["stopping"].value = "fixed"
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

    def stopping_fields(self) -> list:
        return []  # decoders need no early stopping

    def stack_fields(self) -> list:
        return []  # each slice is its own batch of members x patches

    def preset_values(self) -> dict:
        return dict(PRESETS[self["preset"].value])

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
        planes = image.reshape(-1, *plane)
        truths = None if ground_truth is None else ground_truth.reshape(-1, *plane)

        def events(out, cancel):
            from .. import decoder
            from ..api import SliceDone, SliceProgress

            out_planes = out.reshape(-1, *plane)  # a view: the layer's data fills slice by slice
            results, records, reports = [], [], []
            count = len(planes)
            for i, img in enumerate(planes):
                truth = None if truths is None else truths[i]
                gen = callback_events(lambda callback: decoder.fit_decoder(
                    img, ground_truth=truth, callback=callback, cancel=cancel, **options))
                while True:
                    try:
                        progress = next(gen)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    yield SliceProgress(i, i, count, _summary(progress, grid, members, decoder))
                out_planes[i] = result.output
                report = result.report
                record = {"slice": i, "iterations": report["iterations"], "seconds": report["seconds"]}
                if "mean" in report:
                    record.update(psnr=report["mean"]["psnr"], ssim=report["mean"]["ssim"])
                if report["cancelled"]:
                    record["partial"] = True
                results.append(result)
                records.append(record)
                reports.append(report)
                yield SliceDone(i, i, count, out_planes[i], record)
                if report["cancelled"]:
                    break
            partial = len(results) < count or bool(reports[-1]["cancelled"])
            summary = {**reports[-1], "slices": records, "partial": partial,
                       "seconds": float(sum(r["seconds"] for r in reports))}
            if count > 1:
                summary["slice_reports"] = reports
            return results, summary
        return events

    def finish(self, results, report, layer) -> None:
        """Add the members, the spread and (for one slice) the patch outputs as layers, as asked.

        Slices a stopped job did not reach stay at 0 in these layers.
        """
        v = self.values()
        base = layer.name
        n_slices = int(np.prod(layer.data.shape)) // int(np.prod(results[0].output.shape))
        std = np.zeros((n_slices, *results[0].std.shape), np.float32)
        members = np.zeros((v["ensemble"], n_slices, *results[0].output.shape), np.float32)
        for i, r in enumerate(results):
            std[i], members[:, i] = r.std, r.members
        if v["add_spread"] and v["ensemble"] > 1:
            self.viewer.add_image(std.reshape(layer.data.shape), name=f"{base} spread (std)",
                                  colormap="magma", rgb=layer.rgb, **_geometry(layer),
                                  metadata={"source": base, "what": "per-pixel std across members"})
        if v["add_members"] and v["ensemble"] > 1:
            self.viewer.add_image(members.reshape(-1, *layer.data.shape), name=f"{base} members",
                                  rgb=layer.rgb, contrast_limits=layer.contrast_limits,
                                  **_geometry(layer, "member"), metadata={"source": base})
        if v["add_patches"] and len(results[0].patches) > 1 and n_slices == 1:
            self.viewer.add_image(np.stack(results[0].patches), name=f"{base} patches", rgb=layer.rgb,
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
