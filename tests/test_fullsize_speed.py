"""Full-size speed work: the pixel-shuffle skip network, the measured cost estimate, the GPU benchmark."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from napari_dip import estimate_cost
from napari_dip.core.nets.shuffle import ShuffleSkipConfig
from napari_dip.core.nets.factory import build_network
from napari_dip.core.nets.skip import SkipNet
from napari_dip.core.task import make_config

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    """The module benchmarks/<name>.py (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered before it runs, as an import would (dataclasses need it)
    spec.loader.exec_module(module)
    return module
TINY = dict(channels_down=(8, 16), channels_up=(8, 16), channels_skip=(4, 4), code_channels=8)


def test_shuffle_net_works_at_half_size_and_rearranges_sub_pixels():
    cfg = ShuffleSkipConfig(**TINY)
    assert cfg.padded_size(30, 41) == (32, 48)  # multiple of shuffle * 2 ** scales = 8
    assert cfg.code_shape(32, 48) == (8, 16, 24)
    net = cfg.build(3).eval()
    code = torch.rand(1, *cfg.code_shape(32, 48))
    out = net(code)
    assert out.shape == (1, 3, 32, 48)
    inner = SkipNet.forward(net, code)  # 12 sub-pixel channels at 16 x 24
    assert inner.shape == (1, 12, 16, 24)
    torch.testing.assert_close(out[0, 1, 1::2, 0::2], inner[0, 4 + 2])  # channel c, offset (dy, dx) -> 4c + 2dy + dx
    torch.testing.assert_close(out, F.pixel_shuffle(inner, 2))


def test_shuffle_net_batched_problems_match_single_ones():
    cfg = ShuffleSkipConfig(**TINY)
    make = lambda g: cfg.build(1, g)  # noqa: E731
    packed, single = build_network(make, [3, 5]).eval(), build_network(make, [5]).eval()
    code = torch.rand(2, *cfg.code_shape(16, 16))
    torch.testing.assert_close(packed(code)[1:], single(code[1:]), rtol=1e-4, atol=1e-5)


def test_shuffle_net_is_a_network_option_and_rejects_a_bad_factor():
    config = make_config("denoise", architecture="shuffle")
    assert isinstance(config.network, ShuffleSkipConfig) and config.architecture == "shuffle"
    assert config.network.channels_down == (16, 32, 64, 128) and config.fit.precision == "fp32"
    assert make_config("denoise").architecture == "skip"  # the base type is still the skip net
    config = make_config("denoise", network=ShuffleSkipConfig(**TINY))
    assert config.network.size_multiple == 8
    with pytest.raises(ValueError, match="shuffle must be"):
        make_config("denoise", network=ShuffleSkipConfig(**TINY, shuffle=0))


def test_cost_estimate_probes_each_batch_size_and_prices_the_run_at_the_cap():
    image = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    before = image.copy()
    config = make_config("denoise", iterations=50, network=TINY, precision="fp32")
    est = estimate_cost(config, image, device="cpu", batch_size=2, warm_start=True, probe=2)
    np.testing.assert_array_equal(image, before)  # only read
    assert [n for n, _ in est.fits] == [1, 2]  # the cold first slice, then a batch of two
    assert all(s > 0 for _, s in est.fits)
    assert est.iterations == 50
    assert est.seconds == pytest.approx(50 * sum(s for _, s in est.fits))
    assert est.eta(0, 0) == pytest.approx(est.seconds)
    assert est.eta(1, 50) == 0 and est.eta(0, 50) == pytest.approx(50 * est.fits[1][1])
    assert "s per iteration" in est.summary()
    with pytest.raises(ValueError, match="probe"):
        estimate_cost(config, image, probe=0)


def test_gpu_benchmark_runs_on_the_cpu_as_a_smoke_test(capsys):
    gpu = _benchmark("gpu")
    result = gpu.main(["--device", "cpu", "--size", "32", "--timing", "2", "--warmup", "1", "--iterations", "2"])
    assert result["speed"]["device"] == "cpu" and result["speed"]["iterations_per_s"] > 0
    assert result["speed"]["timed_iterations"] == 2
    assert result["speed"]["host_syncs_per_iteration"] is None  # counted on CUDA only
    row = result["section"]
    assert row["iterations"] == [2] and row["sections"] == 1
    assert 0 < row["psnr"] < 60 and row["psnr_noisy"] == pytest.approx(20.2, abs=0.5)  # sigma 25/255
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # two JSON lines


def test_section_benchmark_measures_interleaved_costs_per_case():
    section = _benchmark("section")
    row = section.main(["--size", "64", "--costs", "skip:fp32", "shuffle:fp32", "--rounds", "2"])
    assert set(row["costs"]) == {"skip:fp32", "shuffle:fp32"}
    assert all(0 < c["best_s"] <= c["median_s"] for c in row["costs"].values())


def test_section_benchmark_runs_the_network_it_is_given():
    section = _benchmark("section")
    default = section.main(["--size", "64", "--iterations", "2"])
    shuffle = section.main(["--size", "64", "--iterations", "2", "--architecture", "shuffle"])
    assert default["network"] == "SkipConfig" and shuffle["network"] == "ShuffleSkipConfig"
    assert shuffle["iterations"] == [2] and shuffle["psnr"] != default["psnr"]
