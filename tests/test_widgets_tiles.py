"""A large image fitted in tiles shows in its result layer tile by tile, with the time left."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_tiles_appear_in_the_result_layer_as_they_finish(make_napari_viewer, qtbot):
    from napari_dip import api
    from napari_dip._widgets.layers import Region
    from napari_dip._widgets.runner import Job, registry_for
    from napari_dip.core.task import make_config
    y, x = np.mgrid[0:96, 0:80] / 24.0
    image = (0.5 + 0.3 * np.sin(y) * np.cos(x)).astype(np.float32)
    viewer = make_napari_viewer()
    src = viewer.add_image(image, name="big")
    config = make_config("denoise", iterations=15, stop="fixed")

    def events(out, cancel):  # 4 tiles of 64 x 64, one at a time
        return api.run(config, image, out=out, cancel=cancel, tile_size=64, batch_size=1)

    job = Job("DIP denoise", src, image, None, Region((slice(None), slice(None)), (0, 0)), events, {})
    run = registry_for(viewer).submit(job)
    qtbot.waitUntil(lambda: run.layer is not None, timeout=60_000)
    shown = np.array(run.layer.data)
    assert run.state == "running" and run.done == []  # the slice is not finished ...
    assert shown[:16, :16].any() and not shown[-16:, -16:].any()  # ... its first tile is in, the last not yet
    assert "tile 2/4" in run.text and "ETA" in run.text
    qtbot.waitUntil(lambda: not run.active, timeout=120_000)
    assert run.state == "done" and np.asarray(run.layer.data)[-16:, -16:].any()
