"""Speed levers: precision and layout resolution, bf16-friendly blocks, quality in bf16."""
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_dip.core import fit as fit_module
from napari_dip.core.fit import (BF16_MIN_PIXELS, FitSettings, LayoutAdam, drain, fit, resolve_layout,
                                 resolve_precision)
from napari_dip.core.metrics import psnr
from napari_dip.core.nets import SkipConfig
from napari_dip.core.nets.blocks import Conv, cat_groups
from napari_dip.core.task import build_problem, make_config

CPU = torch.device("cpu")
SMALL = SkipConfig(channels_down=(16, 32, 64), channels_up=(16, 32, 64), channels_skip=(4, 4, 4))
ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "em" / "isbi2012_train_volume.tif"


def test_precision_resolution(monkeypatch):
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    monkeypatch.setattr(fit_module, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", CPU, pixels=BF16_MIN_PIXELS) is torch.bfloat16
    assert resolve_precision("auto", CPU, pixels=64 * 64) is None  # too small to pay off
    monkeypatch.setattr(fit_module, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", CPU, pixels=10 ** 6) is None  # no bf16 hardware: fp32
    assert resolve_precision("auto", torch.device("mps")) is None


def test_layout_is_channels_last_only_with_autocast():
    assert resolve_layout("auto", torch.bfloat16) == torch.channels_last
    assert resolve_layout("auto", None) == torch.contiguous_format
    assert resolve_layout("default", torch.bfloat16) == torch.contiguous_format
    assert resolve_layout("channels_last", None) == torch.channels_last
    with pytest.raises(ValueError, match="layout"):
        FitSettings(layout="nhwc").validate()


def test_adam_on_channels_last_weights_matches_adam_and_copies_nothing():
    torch.manual_seed(0)
    weights = [torch.randn(8, 3, 3, 3).to(memory_format=torch.channels_last), torch.randn(8)]
    ours = [torch.nn.Parameter(w.clone(memory_format=torch.preserve_format)) for w in weights]
    plain = [torch.nn.Parameter(w.contiguous()) for w in weights]
    opt, ref = LayoutAdam(ours, 0.1, CPU), torch.optim.Adam(plain, lr=0.1)
    storage = ours[0].data_ptr()
    for _ in range(3):
        opt.zero_grad()
        ref.zero_grad()
        for group in (ours, plain):
            (group[0] ** 3).sum().add((group[1] ** 2).sum()).backward()
        opt.step(0.1)
        ref.step()
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a.detach(), b.detach())
    assert ours[0].is_contiguous(memory_format=torch.channels_last) and ours[0].data_ptr() == storage
    assert opt.views[0].is_contiguous()  # what Adam steps on: no copy to the default layout


def test_presets_use_automatic_precision():
    assert make_config("denoise").fit.precision == "auto"
    assert make_config("denoise", preset="paper").fit.precision == "auto"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batchnorm_in_the_chosen_layout_keeps_low_variance_inputs(precision):
    # mean 1, std 0.003: channels-last BatchNorm loses precision on such inputs in fp32
    amp = resolve_precision(precision, CPU)
    layout = resolve_layout("auto", amp)
    dtype = amp or torch.float32
    x = (1 + 0.003 * torch.randn(1, 16, 64, 64, generator=torch.Generator().manual_seed(0))).to(dtype)
    exact = torch.nn.functional.batch_norm(x.double(), None, None, training=True)
    bn = torch.nn.BatchNorm2d(16)
    err = (bn(x.contiguous(memory_format=layout)).double() - exact).abs().max().item()
    err_default = (bn(x).double() - exact).abs().max().item()
    assert err <= 1.05 * err_default + 1e-7
    if amp is None:
        assert err < 1e-4


def test_padding_stays_in_the_autocast_dtype():
    conv = Conv(4, 4, 3)
    x = torch.rand(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = conv[0](x.bfloat16())
        assert padded.dtype == torch.bfloat16 and padded.shape == (1, 4, 10, 10)
        assert conv(x).dtype == torch.bfloat16


@pytest.mark.parametrize("groups", [1, 3])
def test_concatenation_keeps_channels_last_and_passes_dense_gradients(groups):
    a = torch.rand(1, groups * 2, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.rand(1, groups * 5, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = cat_groups([a, b], groups)
    ref = cat_groups([a.detach().contiguous(), b.detach().contiguous()], groups)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref)
    (out * torch.arange(out.shape[1], dtype=out.dtype).view(1, -1, 1, 1)).sum().backward()
    for t in (a, b):
        assert t.grad.is_contiguous(memory_format=torch.channels_last)
    assert float(a.grad[0, 2 if groups > 1 else 1, 0, 0]) == (7 if groups > 1 else 1)


def test_engine_runs_channels_last_in_bf16_and_default_layout_in_fp32():
    for precision, layout in (("bf16", torch.channels_last), ("fp32", torch.contiguous_format)):
        config = make_config("denoise", network=SMALL, iterations=2, stop="fixed", precision=precision)
        problem = build_problem(config, torch.rand(1, 1, 16, 16), seeds=[0])
        result = drain(fit(problem, config.fit, config.stop_rule(1), device=CPU))
        weight = next(p for p in problem.network.parameters() if p.dim() == 4 and p.shape[-1] == 3)
        assert weight.is_contiguous(memory_format=layout) and weight.dtype == torch.float32
        assert result.output.dtype == np.float32 and np.isfinite(result.output).all()


@pytest.mark.slow
def test_bf16_quality_is_within_a_tenth_of_a_db_of_fp32():
    tifffile = pytest.importorskip("tifffile")
    clean = torch.from_numpy(tifffile.imread(ISBI)[:4, 200:232, 200:232].astype(np.float32) / 255)[:, None]
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noisy = (clean + 25 / 255 * noise).clamp(0, 1)
    scores = {}
    for precision in ("fp32", "bf16"):
        config = make_config("denoise", network=SMALL, iterations=200, stop="fixed", precision=precision)
        problem = build_problem(config, noisy, seeds=[0, 1, 2, 3])
        result = drain(fit(problem, config.fit, config.stop_rule(4), device=CPU))
        scores[precision] = float(psnr(torch.from_numpy(result.output), clean).mean())
    base = float(psnr(noisy, clean).mean())
    assert scores["fp32"] > base + 3  # it denoised
    assert abs(scores["bf16"] - scores["fp32"]) < 0.1


def test_benchmark_prices_a_shrinking_batch_at_the_cost_of_each_size():
    import importlib.util
    spec = importlib.util.spec_from_file_location("speed_benchmark",
                                                  Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    # one cold slice in fp32, then a batch in bf16 whose slices stop one by one
    fits = [(1, "fp32", [500]), (3, "bf16", [200, 300, 200])]
    assert speed.batch_segments(fits) == [(1, "fp32", 500), (3, "bf16", 200), (1, "bf16", 100)]
    costs = {(1, "fp32"): 1.0, (3, "bf16"): 2.0, (1, "bf16"): 1.5}
    assert speed.modelled_seconds({"fits": fits}, costs) == 500 + 400 + 150
