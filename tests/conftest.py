"""Fixtures for the napari widget tests (run under Xvfb via pytest-xvfb; QT_QPA_PLATFORM unset)."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SCREENSHOTS = ROOT / "screenshots"  # gitignored; look at them after a run

WIDGETS = {
    "denoise": "Denoise",
    "superres": "Super-resolution",
    "inpaint": "Inpaint",
    "decoder": "Deep Decoder",
}


@pytest.fixture(scope="session")
def em_stack() -> np.ndarray:
    """The ISBI 2012 EM training stack, (30, 512, 512) uint8."""
    import tifffile

    path = SHARED / "em" / "isbi2012_train_volume.tif"
    if not path.exists():
        pytest.fail(f"{path} is missing: the real-data tests need ../shared/data next to the project "
                    "(CI provides it)")
    return tifffile.imread(path)


@pytest.fixture
def em_crop(em_stack) -> np.ndarray:
    """Three 64x64 slices of real EM data, uint8."""
    return np.ascontiguousarray(em_stack[:3, 200:264, 200:264])


@pytest.fixture
def open_widget(make_napari_viewer, qtbot):
    """open_widget(key, show=False) -> (viewer, widget), the widget docked from the manifest."""
    import torch

    torch.set_num_threads(1)

    def open_(key: str, *, show: bool = False, viewer=None):
        viewer = viewer or make_napari_viewer(show=show)
        dock, widget = viewer.window.add_plugin_dock_widget("napari-dip", WIDGETS[key])
        if show:
            qtbot.waitUntil(dock.isVisible)
        return viewer, widget
    return open_


@pytest.fixture
def run_job(qtbot):
    """run_job(widget, timeout=60_000): click Run and wait until the job has ended."""
    def run(widget, timeout: int = 60_000):
        widget["run"].clicked.emit()
        qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)
        return widget.runner.layer
    return run


@pytest.fixture
def read_only_folder(monkeypatch):
    """read_only_folder(folder): creating files under ``folder`` fails as on a read-only mount."""
    real = os.open

    def make(folder):
        def read_only(path, flags, *args, **kwargs):
            if str(path).startswith(str(folder)) and flags & os.O_CREAT:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
            return real(path, flags, *args, **kwargs)
        monkeypatch.setattr(os, "open", read_only)
    return make


@pytest.fixture
def notifications():
    """The napari notifications emitted during the test, as a list."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture
def screenshot():
    """screenshot(viewer, name): save the whole window to screenshots/<name>.png; return the array."""
    import imageio.v3 as iio

    def shoot(viewer, name: str) -> np.ndarray:
        SCREENSHOTS.mkdir(exist_ok=True)
        img = viewer.screenshot(canvas_only=False, flash=False)
        iio.imwrite(SCREENSHOTS / f"{name}.png", img)
        return img
    return shoot
