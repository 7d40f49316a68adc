"""The memory model: calibrated against a measured fit; the planner's tile and batch choices."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from napari_dip.core.memory import Plan, fit_bytes, format_bytes, parse_bytes, plan
from napari_dip.core.task import make_config

CPU = torch.device("cpu")
MEASURE = """
import json, sys, threading
import psutil, torch
from dataclasses import replace
from napari_dip.core.fit import drain, fit
from napari_dip.core.memory import fit_bytes
from napari_dip.core.task import build_problem, make_config
size, precision = int(sys.argv[1]), sys.argv[2]
config = make_config("denoise", iterations=3, stop="fixed", precision=precision)
problem = build_problem(config, torch.rand(1, 1, size, size), seeds=[0])
fit_bytes(config.network, 1, (size, size))  # as api.run plans before it fits
me = psutil.Process()
before = peak = me.memory_info().rss
running = True
def sample():  # the resident size during the fit (the process's lifetime peak includes its imports)
    global peak
    while running:
        peak = max(peak, me.memory_info().rss)
sampler = threading.Thread(target=sample)
sampler.start()
drain(fit(problem, replace(config.fit, parallel=1), config.stop_rule(1), device=torch.device("cpu")))
running = False
sampler.join()
print(json.dumps(peak - before))
"""


def test_prediction_bounds_the_measured_peak_of_a_small_fit():
    """Measured: the peak RSS of a fresh process fitting one 256x256 problem in fp32 (what
    'auto' runs on CPUs without fast bf16), over its RSS after building the problem and
    planning (as api.run does). The model may be at most 25% below it, nor more than twice it.
    256x256, not smaller: a fixed part of the peak (allocator arenas, thread pools) does not
    scale with the image and differs between installs; at 128x128 it was 90 MB here and 120 MB
    on a fresh CI install against 94 MB predicted. (bf16's factor is measured, docs/speed.md, but
    its peak varied too much between runs on a loaded host to test.) The resident size is
    sampled during the fit: the process's lifetime peak (ru_maxrss) came out 2-6x higher after
    the suite's GUI tests."""
    precision = "fp32"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", MEASURE, "256", precision], capture_output=True, text=True,
                          env=env, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    predicted = fit_bytes(make_config("denoise").network, 1, (256, 256), precision=precision)
    assert 0.5 * predicted <= measured <= 1.25 * predicted, (measured, predicted)


def test_parse_and_format_bytes():
    assert parse_bytes("4GB") == 4 * 2 ** 30 and parse_bytes("512 mb") == 512 * 2 ** 20
    assert parse_bytes("1.5g") == int(1.5 * 2 ** 30) and parse_bytes(1000) == 1000
    for bad in ("lots", "-1GB", 0, "4 parsecs"):
        with pytest.raises(ValueError, match="max_memory"):
            parse_bytes(bad)
    assert format_bytes(3 * 2 ** 30) == "3.00 GB"


def test_plan_whole_image_when_it_fits_else_the_largest_tile_that_does():
    net = make_config("denoise").network
    whole = fit_bytes(net, 1, (512, 512))
    p = plan((512, 512), net, device=CPU, max_memory=3 * whole, precision="fp32")
    assert p.tile is None and p.batch_size == 3 and p.estimated_bytes == 3 * whole
    p = plan((4096, 4096), net, device=CPU, max_memory="3GB", precision="fp32")
    assert p.tile is not None and p.tile[0] == p.tile[1]
    assert p.bytes_per_problem <= 3 * 2 ** 30 < fit_bytes(net, 1, (2 * p.tile[0], 2 * p.tile[0]))
    assert isinstance(p, Plan) and p.budget == 3 * 2 ** 30


def test_plan_rounds_forced_tiles_and_limits_batches():
    net = make_config("denoise").network
    p = plan((1000, 700), net, device=CPU, max_memory="64GB", tile_size=200, precision="fp32", max_batch=4)
    assert p.tile == (224, 224) and p.batch_size == 4  # 200 rounded up to a multiple of 32
    p = plan((96, 96), net, device=CPU, max_memory="64GB", tile_size=200, precision="fp32")
    assert p.tile is None  # a tile larger than the image: the whole image
    p = plan((300, 300), net, factor=3, device=CPU, max_memory="64GB", tile_size=100, precision="fp32")
    assert p.tile == (192, 192)  # a multiple of 32 whose low-resolution side (64) is whole


def test_refusal_names_the_bytes_and_the_fix():
    net = make_config("denoise").network
    need = fit_bytes(net, 1, (64, 64))
    with pytest.raises(ValueError, match=f"needs about {format_bytes(need)} .* raise --max-memory"):
        plan((4096, 4096), net, device=CPU, max_memory="10MB", precision="fp32")
    with pytest.raises(ValueError, match="smaller --tile-size"):
        plan((4096, 4096), net, device=CPU, max_memory="10MB", tile_size=512, precision="fp32")
