"""Deep Decoder: fit under-parameterised decoders slice by slice (napari_dip.decoder.decoder_run).

Fits R x C patches and N ensemble members of a slice at once; the result layer is the members'
mean (the patches stitched in place), and the members, the per-pixel spread (standard
deviation) and, for one slice, the patch grid with per-patch PSNR (a Shapes layer) can be
added as layers. The dock shows the ensemble's stability (CV of PSNR across members,
per-member PSNR and loss), flagged above 5%.
"""
from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from .form import TaskForm

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
    preset_tooltip = ("'fast': k 64, l 6, s 16, 2000 iterations, for CPUs; 'report': k 96, l 6, s 8, "
                      "5000 iterations, the MRI report's best setting")

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
            SpinBox(name="channels", label="channels k", min=1, max=1024,
                    tooltip="Channels of every block: more fit finer detail (and, with many, the noise)"),
            SpinBox(name="blocks", label="blocks l", min=1, max=12,
                    tooltip="Number of blocks (1x1 convolution, upsampling, ReLU, normalisation)"),
            ComboBox(name="scale", label="scale s", choices=(1, 2, 4, 8, 16, 32, 64),
                     tooltip="The code is H/s x W/s; the blocks upsample it back to H x W"),
            ComboBox(name="code", choices=("uniform", "blurred", "perlin"),
                     tooltip="The fixed random input: uniform noise, blurred noise (3x3 Gaussian, sigma "
                             "0.8) or Perlin noise"),
            SpinBox(name="patch_rows", label="patch rows", min=1, max=16, value=1,
                    tooltip="Fit the image as a grid of this many rows of patches (one decoder each, "
                            "one coherent code); patches are fitted separately, so seams can show"),
            SpinBox(name="patch_cols", label="patch columns", min=1, max=16, value=1,
                    tooltip="Columns of the patch grid"),
            SpinBox(name="ensemble", label="ensemble size", min=1, max=32, value=1,
                    tooltip="Independently initialised decoders fitted at once; the result is their mean"),
            CheckBox(name="add_members", label="add members", value=False,
                     tooltip="Add every member's output as one stack layer (slider 'member')"),
            CheckBox(name="add_spread", label="add spread (std)", value=True,
                     tooltip="Add the per-pixel standard deviation across members: bright where they disagree"),
            CheckBox(name="add_patches", label="add patch grid", value=False,
                     tooltip="Draw the patch grid over the result as a Shapes layer, each patch labelled "
                             "with its PSNR (one slice only)"),
        ]

    def network_fields(self) -> list:
        return [ComboBox(name="upsample", choices=("bilinear", "nearest"), value="bilinear",
                         tooltip="How each block enlarges its features: bilinear or nearest interpolation"),
                CheckBox(name="code_3d", label="3D code", value=False,
                         tooltip="Channels interpolated between two noise images (Perlin: a 3D volume)"),
                FloatSpinBox(name="feature_size", label="Perlin feature size", min=0.5, max=256.0,
                             value=4.0, tooltip="Size of the Perlin code's features, in code pixels")]

    def stopping_fields(self) -> list:
        return []  # decoders need no early stopping

    def stack_fields(self) -> list:
        return []  # each slice is its own batch of members x patches

    def preset_values(self) -> dict:
        return dict(PRESETS[self["preset"].value])

    def events(self, image, channel_axis, ground_truth, device, extra):
        v = self.values()
        options = dict(task=v["goal"], channels=v["channels"], blocks=v["blocks"], scale=int(v["scale"]),
                       upsample=v["upsample"], code=v["code"], code_3d=v["code_3d"],
                       feature_size=v["feature_size"], patches=f"{v['patch_rows']}x{v['patch_cols']}",
                       ensemble=v["ensemble"], iterations=v["iterations"], lr=v["lr"], stop=v["stopping"],
                       seed=v["seed"], precision=v["precision"], device=device,
                       preview_every=1 if v["preview_every"] > 0 else 0)

        def events(out, cancel):
            from ..decoder import decoder_run

            return (yield from decoder_run(image, ground_truth=ground_truth, channel_axis=channel_axis,
                                           out=out, cancel=cancel, **options))
        return events

    def finish(self, results, report, layer) -> None:
        """Add the members, the spread and (for one slice) the patch grid as layers, as asked.

        Slices a stopped job did not reach stay at 0 in these layers.
        """
        v = layer.metadata["settings"]
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
        if v["add_patches"] and report.get("patch_metrics") and n_slices == 1:
            add_patch_grid(self.viewer, layer, report["patch_metrics"])

    @staticmethod
    def summary_of(report: dict) -> tuple[str, bool]:
        return stability_text(report)


def stability_text(report: dict) -> tuple[str, bool]:
    """The ensemble's stability and the patch note for the dock; True when flagged unstable."""
    from ..core.metrics import UNSTABLE_CV

    reports = report.get("slice_reports") or [report]
    lines, flagged = [], False
    for k, r in enumerate(reports):
        where = f"slice {k + 1}: " if len(reports) > 1 else ""
        members = r.get("members", [])
        psnrs = [m["psnr"] for m in members if m.get("psnr") is not None]
        loss = [m["final_loss"] for m in members if m.get("final_loss") is not None]
        parts = []
        if "cv_percent" in r:
            unstable = bool(r["unstable"])
            flagged |= unstable
            parts.append(f"CV {r['cv_percent']:.2f}% across {len(members)} members "
                         f"({'UNSTABLE: above' if unstable else 'stable: at most'} {UNSTABLE_CV:g}%)")
        elif len(members) > 1:
            parts.append(f"{len(members)} members (the CV needs a reference: goal 'fit' or a ground truth)")
        if psnrs:
            parts.append("member PSNR " + ", ".join(f"{p:.2f}" for p in psnrs) + " dB")
        if loss:
            parts.append("loss " + ", ".join(f"{x:.2e}" for x in loss))
        if r.get("mean", {}).get("psnr") is not None:
            parts.append(f"mean PSNR {r['mean']['psnr']:.2f} dB")
        if parts:
            lines.append(where + " · ".join(parts))
    if report.get("patches", "1x1") != "1x1":
        lines.append(f"Patches {report['patches']} are fitted separately and stitched without blending: "
                     "seams can show at their borders.")
    return "\n".join(lines), flagged


def add_patch_grid(viewer, layer, patches: list[dict]):
    """A Shapes layer over ``layer`` (a single slice) with one rectangle per patch and its PSNR."""
    rects, labels = [], []
    for p in patches:
        if p["height"] <= 0 or p["width"] <= 0:
            continue
        y0, x0 = p["y"] - 0.5, p["x"] - 0.5  # pixel edges: napari puts pixel centres on integers
        rects.append(np.array([[y0, x0], [y0 + p["height"], x0 + p["width"]]]))
        psnr = f" · {p['psnr']:.1f} dB" if p.get("psnr") is not None else ""
        labels.append(f"patch {p['row']},{p['col']}{psnr}")
    geo = _geometry(layer)
    plane = {k: v[-2:] for k, v in geo.items()}
    return viewer.add_shapes(rects, shape_type="rectangle", name=f"{layer.name} patch grid",
                             edge_color="yellow", face_color="transparent", edge_width=0.5,
                             features={"label": labels},
                             text={"string": "{label}", "size": 9, "color": "yellow", "anchor": "upper_left"},
                             metadata={"source": layer.name, "patch_metrics": patches}, **plane)


def _geometry(layer, new_axis: str | None = None) -> dict:
    """The layer's scale, translate, units and labels, with a leading ``new_axis`` if given."""
    geo = {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
           "units": tuple(str(u) for u in layer.units), "axis_labels": tuple(layer.axis_labels)}
    if new_axis is None:
        return geo
    return {"scale": (1.0, *geo["scale"]), "translate": (0.0, *geo["translate"]),
            "units": ("pixel", *geo["units"]), "axis_labels": (new_axis, *geo["axis_labels"])}
