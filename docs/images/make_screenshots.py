"""Make the screenshots of docs/widgets.md: each widget with its result, on the sample data.

Run from the project root on a machine with a display, or headless with
``xvfb-run -a python docs/images/make_screenshots.py [name ...]`` (names: denoise, superres,
inpaint, decoder, noise, estimate; default all but noise and estimate, which need ``../shared/data``).
Prints the settings, seconds and PSNR of every run. ``denoise`` also saves ``denoise_running.png``,
taken while the job runs; ``estimate`` shows the denoise dock's time estimate for a 512x512 ISBI section.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

OUT = Path(__file__).resolve().parent


def open_widget(viewer, name: str):
    return viewer.window.add_plugin_dock_widget("napari-dip", name)[1]


def wait(condition) -> None:
    """Let the GUI run until ``condition()`` holds."""
    from qtpy.QtWidgets import QApplication

    while not condition():
        QApplication.processEvents()
        time.sleep(0.02)


def run(widget, during=None, **values):
    """Run the widget's job with ``values`` set; ``during(widget)`` is called while it runs."""
    for key, value in values.items():
        widget[key].value = value
    start = time.perf_counter()
    job = widget.run()
    if during is not None:
        during(widget)
    wait(lambda: not job.active)
    layer = widget.runner.layer
    md = layer.metadata
    print(f"{layer.name}: {values}; {time.perf_counter() - start:.0f} s; "
          f"metrics { {k: v for k, v in md['metrics'].items() if k != 'slices'} }", flush=True)
    return layer


def shoot(viewer, name: str, grid: bool = True) -> None:
    from qtpy.QtWidgets import QApplication

    viewer.canvas.grid.enabled = grid
    viewer.window._qt_window.resize(1500, 820)
    QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    img = viewer.screenshot(canvas_only=False, flash=False)
    iio.imwrite(OUT / f"{name}.png", img)
    print(f"wrote {OUT / name}.png {img.shape}", flush=True)


def mri_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 128x128 crop of an MRI sample slice and its Lanczos2 downsampling by 2 (the input)."""
    import torch

    from napari_dip._sample_data import mri_slices
    from napari_dip.core.operators import Downsample

    clean = mri_slices()[1][0][2, 60:188, 32:160]
    low = Downsample(2)(torch.from_numpy(clean[None, None].copy()))[0, 0].numpy()
    return clean, low


def denoise(viewer):
    viewer.open_sample("napari-dip", "f16_noisy")
    w = open_widget(viewer, "Denoise")
    w.reset_choices()
    w["image"].value = viewer.layers["F16"]
    w["ground_truth"].value = viewer.layers["F16 clean"]

    def while_running(widget):  # the input stays in view; the result shows the latest preview
        wait(lambda: len(widget.curve.points["loss"]) >= 60 and widget.runner.layer is not None)
        shoot(viewer, "denoise_running")

    run(w, during=while_running, preset="fast", stopping="auto", iterations=1200, preview_every=5)
    shoot(viewer, "denoise")


def estimate(viewer):
    """A full ISBI section in the denoise dock after "Estimate time", before Run."""
    import tifffile

    section = tifffile.imread(OUT.parents[2].parent / "shared" / "data" / "em" / "isbi2012_train_volume.tif")[20]
    viewer.add_image(section, name="ISBI section 20")
    w = open_widget(viewer, "Denoise")
    w.reset_choices()
    w["image"].value = viewer.layers["ISBI section 20"]
    w.estimate()
    wait(lambda: w["estimate"].enabled)
    print(w.summary.text(), flush=True)
    shoot(viewer, "estimate", grid=False)


def superres(viewer):
    clean, low = mri_pair()
    viewer.add_image(clean, name="MRI 0.8 mm", scale=(0.8, 0.8), units=("mm", "mm"), visible=False)
    viewer.add_image(low, name="MRI 1.6 mm", scale=(1.6, 1.6), translate=(0.4, 0.4), units=("mm", "mm"))
    w = open_widget(viewer, "Super-resolution")
    w.reset_choices()
    w["image"].value = viewer.layers["MRI 1.6 mm"]
    w["ground_truth"].value = viewer.layers["MRI 0.8 mm"]
    run(w, factor=2, preset="fast", stopping="fixed", iterations=1000, preview_every=10)
    viewer.layers["MRI 0.8 mm"].visible = False
    shoot(viewer, "superres")


def inpaint(viewer):
    from napari_dip._sample_data import f16_noisy

    clean = f16_noisy()[1][0]
    holes = np.zeros((128, 128), np.uint8)
    for y in range(12, 128, 24):
        holes[y:y + 4, 8:120] = 1
    viewer.add_image(clean * (1 - holes[..., None]), name="F16 with holes", rgb=True)
    viewer.add_labels(holes, name="holes")
    w = open_widget(viewer, "Inpaint")
    w.reset_choices()
    w["image"].value = viewer.layers["F16 with holes"]
    w["mask"].value = viewer.layers["holes"]
    run(w, preset="fast", stopping="fixed", iterations=600, preview_every=10)
    viewer.layers.remove("holes")
    shoot(viewer, "inpaint")


def decoder(viewer):
    viewer.open_sample("napari-dip", "mri_t1")
    viewer.layers.remove("T1 MRI")
    clean = viewer.layers["T1 MRI clean"]
    viewer.dims.set_point(0, 2 * 0.8)
    w = open_widget(viewer, "Deep Decoder")
    w.reset_choices()
    w["image"].value = clean
    run(w, preset="fast", channels=48, blocks=6, scale=16, code="blurred", ensemble=2, patch_rows=2,
        patch_cols=2, add_spread=False, add_patches=True, iterations=300, preview_every=10)
    shoot(viewer, "decoder", grid=False)  # the mean, the patch grid on top, the stability in the dock


def noise(viewer):
    """A W2S widefield frame (real shot and read noise, 128 x 128 centre crop) denoised with
    ``noise="auto"``: the noise model's plot beside the loss curve, the estimate in the readout."""
    data = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fluo" / "w2s"
    frame = iio.imread(data / "input_avg1_077_2.tif")[192:320, 192:320]
    viewer.add_image(frame, name="W2S frame")
    w = open_widget(viewer, "Denoise")
    w.reset_choices()
    w["image"].value = viewer.layers["W2S frame"]
    run(w, preset="fast", noise="auto", stopping="auto", iterations=300, preview_every=10)
    shoot(viewer, "denoise_noise_model")


def main(names: list[str]) -> None:
    import napari
    import torch

    torch.set_num_threads(1)
    for name in names or ["denoise", "superres", "inpaint", "decoder"]:
        viewer = napari.Viewer()
        globals()[name](viewer)
        viewer.close()


if __name__ == "__main__":
    main(sys.argv[1:])
