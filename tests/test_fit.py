"""The fitting loop: convergence, seeding, cancellation, stopping rules, fallbacks."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_dip.core.fit import FitSettings, Progress, drain, fit, resolve_device
from napari_dip.core.nets import SkipConfig
from napari_dip.core.stopping import make_stop_rule
from napari_dip.core.task import build_problem, make_config

TINY = SkipConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2), code_channels=4)
CPU = torch.device("cpu")


def _target(seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clean = (0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy))[None, None]
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return clean, noisy


def _run(iterations=60, seed=0, stop="fixed", gt=False, cancel=None, size=16, **fit_options):
    config = make_config("denoise", network=TINY, iterations=iterations, stop=stop, seed=seed)
    config = replace(config, fit=replace(config.fit, **fit_options))
    clean, noisy = _target(size=size)
    problem = build_problem(config, noisy, seeds=[seed], ground_truth=clean if gt else None)
    events = []
    result = drain(fit(problem, config.fit, config.stop_rule(1), device=CPU, cancel=cancel), events.append)
    return result, events


def test_loss_goes_down():
    result, events = _run(iterations=80)
    curve = result.loss_curve[:, 0]
    assert curve[-10:].mean() < 0.5 * curve[:10].mean()
    assert len(events) == 80 and all(isinstance(e, Progress) for e in events)
    assert result.output.shape == (1, 1, 16, 16) and result.output.dtype == np.float32


def test_same_seed_same_output_and_other_seed_differs():
    a, _ = _run(iterations=15, seed=4)
    b, _ = _run(iterations=15, seed=4)
    c, _ = _run(iterations=15, seed=5)
    assert np.array_equal(a.output, b.output)
    assert not np.allclose(a.output, c.output)


def test_cancel_returns_what_is_done():
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 7

    result, events = _run(iterations=100, cancel=cancel)
    assert result.cancelled and result.iterations == 7 and len(events) == 7
    assert result.output.shape == (1, 1, 16, 16) and np.isfinite(result.output).all()


def test_cancel_before_the_first_iteration_still_returns_an_image():
    result, _ = _run(iterations=10, cancel=lambda: True)
    assert result.cancelled and result.iterations == 0 and result.output.shape == (1, 1, 16, 16)


def test_oracle_returns_the_best_candidate_and_its_iteration():
    result, events = _run(iterations=120, stop="oracle", gt=True, ema=0.0)
    curve = result.psnr_curve[:, 0]
    best = int(np.argmax(curve))
    assert result.stop_iterations[0] == best + 1
    clean, _ = _target()
    from napari_dip.core.metrics import psnr
    got = float(psnr(torch.from_numpy(result.output), clean)[0])
    assert got == pytest.approx(float(curve.max()), abs=1e-3)
    assert events[0].ssim is not None  # metrics every 25 iterations and at the first


def test_oracle_without_ground_truth_is_an_error():
    config = make_config("denoise", network=TINY, iterations=3, stop="oracle")
    _, noisy = _target()
    problem = build_problem(config, noisy, seeds=[0])
    with pytest.raises(ValueError, match="ground truth"):
        drain(fit(problem, config.fit, config.stop_rule(1), device=CPU))


def test_previews_come_every_n_iterations():
    _, events = _run(iterations=10, preview_every=4)
    with_preview = [e.iteration for e in events if e.preview is not None]
    assert with_preview == [4, 8]
    assert events[3].preview.shape == (1, 1, 16, 16)


def test_moving_average_smooths_the_returned_output():
    raw, _ = _run(iterations=40, ema=0.0)
    avg, _ = _run(iterations=40, ema=0.99)
    assert not np.allclose(raw.output, avg.output)


def test_the_average_weighs_outputs_in_proportion_to_their_iteration_until_the_cap():
    """decay_t = min(ema, (1 + t) / (3 + t)): output s gets a weight growing as s + 2, so a
    short fit (a warm slice's) averages its whole path, and the plain EMA takes over later."""
    _, events = _run(iterations=30, ema=0.0, preview_every=1)
    raw = np.stack([e.preview for e in events]).astype(np.float64)
    weights = np.array([2.0 * (s + 2) for s in range(1, 31)])
    weights[0] = 12.0  # the first output starts the average
    expected = np.tensordot(weights / weights.sum(), raw, axes=1)
    avg, _ = _run(iterations=30, ema=0.99)
    assert np.allclose(avg.output, expected, atol=1e-5)
    capped, _ = _run(iterations=30, ema=0.5)  # the cap holds from the first iteration
    plain = raw[0]
    for r in raw[1:]:
        plain = 0.5 * plain + 0.5 * r
    assert np.allclose(capped.output, plain, atol=1e-5)


def _largest_move(iterations, **fit_options):
    """The largest change of any weight over a fit, and the fit's output."""
    config = make_config("denoise", network=TINY, iterations=iterations, stop="fixed", seed=0, precision="fp32")
    config = replace(config, fit=replace(config.fit, **fit_options))
    problem = build_problem(config, _target()[1], seeds=[0])
    before = [p.detach().clone() for p in problem.network.parameters()]
    result = drain(fit(problem, config.fit, config.stop_rule(1), device=CPU))
    move = max(float((p.detach() - b).abs().max()) for p, b in zip(problem.network.parameters(), before))
    return move, result.output


def test_a_learning_rate_ramp_scales_the_first_steps():
    # Adam's first step moves a weight by lr * g / |g|: the largest move is the step's rate
    lr = FitSettings().lr
    assert _largest_move(1)[0] == pytest.approx(lr, rel=1e-3)
    assert _largest_move(1, lr_ramp=10)[0] == pytest.approx(lr / 10, rel=1e-3)
    assert _largest_move(1, lr_ramp=4)[0] == pytest.approx(lr / 4, rel=1e-3)
    # a one-iteration ramp is no ramp; a ramp changes the whole path
    np.testing.assert_array_equal(_largest_move(5, lr_ramp=1)[1], _largest_move(5)[1])
    assert not np.allclose(_largest_move(5, lr_ramp=3)[1], _largest_move(5)[1])


def test_loss_jumps_fall_back_to_the_last_good_weights():
    result, _ = _run(iterations=60, lr=0.5, loss_jump=1.05)
    assert result.restarts > 0
    assert np.isfinite(result.output).all()


@pytest.mark.parametrize("bad, match", [({"iterations": 0}, "iterations"), ({"lr": -1.0}, "lr"),
                                        ({"ema": 1.5}, "ema"), ({"precision": "fp8"}, "precision"),
                                        ({"lr_ramp": -1}, "lr_ramp"), ({"lr_ramp": 2.5}, "lr_ramp")])
def test_settings_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        FitSettings(**bad).validate()


def test_unknown_stop_rule_and_device():
    with pytest.raises(ValueError, match="unknown stopping rule"):
        make_stop_rule("early", 1)
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


def test_code_noise_shrinks_as_one_over_the_pixels_above_code_noise_side_squared():
    s = FitSettings(code_noise=1 / 30, code_noise_side=64)
    assert s.code_noise_at(64, 64) == pytest.approx(1 / 30)
    assert s.code_noise_at(32, 48) == pytest.approx(1 / 30)  # small codes keep it, never more
    assert s.code_noise_at(128, 128) == pytest.approx(1 / 120)  # by the pixels: a quarter of 64 x 64's
    assert s.code_noise_at(512, 2048) == pytest.approx(1 / 30 / 256)
    assert FitSettings(code_noise=0.05).code_noise_at(4096, 4096) == 0.05  # 0: fixed
    with pytest.raises(ValueError, match="code_noise_side"):
        FitSettings(code_noise_side=-1).validate()


def test_a_fit_draws_the_code_noise_of_its_code_size():
    scaled, _ = _run(iterations=6, size=32, code_noise=0.1, code_noise_side=16)
    quartered, _ = _run(iterations=6, size=32, code_noise=0.025, code_noise_side=0)
    full, _ = _run(iterations=6, size=32, code_noise=0.1, code_noise_side=0)
    assert np.array_equal(scaled.output, quartered.output)
    assert not np.allclose(scaled.output, full.output)
    assert scaled.code_noise == pytest.approx(0.025) and full.code_noise == pytest.approx(0.1)


def test_the_fast_denoising_preset_scales_code_noise_above_128_pixels_and_the_paper_preset_does_not():
    from napari_dip import api
    assert make_config("denoise").fit.code_noise_side == 128
    assert make_config("denoise", preset="paper").fit.code_noise_side == 0
    rng = np.random.default_rng(0)
    clean = rng.uniform(20, 200, (256, 256))
    gaussian = (clean + rng.normal(0, 10, clean.shape)).astype(np.float32)
    _, report = api.denoise(gaussian, iterations=2, return_report=True)
    assert report["slices"][0]["noise"]["kind"] == "gaussian"
    assert report["slices"][0]["code_noise"] == pytest.approx(1 / 120)


def test_fits_of_shot_noise_keep_the_presets_code_noise_at_every_size():
    from napari_dip import api
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(5, 100, 256), (256, 1))
    shot = (2.0 * rng.poisson(ramp) + rng.normal(0, 3, ramp.shape)).astype(np.float32)
    _, report = api.denoise(shot, iterations=2, return_report=True)
    assert report["slices"][0]["noise"]["kind"] == "poisson-gaussian"
    assert report["slices"][0]["code_noise"] == pytest.approx(1 / 30)
