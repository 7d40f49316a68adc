"""Stopping rules: ES-WMV / ES-EMV on synthetic output sequences and in a real fit."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_dip.core.fit import drain, fit
from napari_dip.core.metrics import psnr
from napari_dip.core.stopping import (DataFitStop, FixedStop, GatedVarianceStop, OracleStop, StopSettings,
                                      VarianceStop, make_stop_rule, smoothed_loss)
from napari_dip.core.task import build_problem, make_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from evaluation import EvaluationStop  # noqa: E402  (an evaluation-only rule: benchmarks/)


def _sequence(n_iter: int, minima: list[int], g_shape=(1, 8, 8), seed=0) -> torch.Tensor:
    """Outputs (T, G, C, H, W) whose iteration-to-iteration jitter is smallest at ``minima``."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(1, n_iter + 1, dtype=torch.float32)
    seqs = []
    for m in minima:
        amp = 0.002 + 0.0001 * (t - m).abs()  # jitter falls towards m, then rises
        base = 0.5 + 0.1 * torch.rand(g_shape, generator=gen)
        seqs.append(base + amp[:, None, None, None] * torch.randn((n_iter, *g_shape), generator=gen))
    return torch.stack(seqs, dim=1)


def _feed(rule, outputs: torch.Tensor) -> list[torch.Tensor]:
    flags = []
    for i, out in enumerate(outputs, start=1):
        flags.append(rule.observe(i, out, out, None))
    return flags


def test_windowed_variance_matches_direct_computation():
    outs = _sequence(300, [120, 200])
    w = 25
    rule = VarianceStop(2, StopSettings(window=w, patience=10_000))
    _feed(rule, outs)
    history = np.array(rule.variance)
    assert history[0, 0] == w and len(history) == 300 - w + 1
    for it in (w, 60, 151, 300):
        window = outs[it - w:it].double()
        direct = window.var(0, unbiased=False).flatten(1).mean(1).numpy()
        np.testing.assert_allclose(history[it - w, 1:], direct, rtol=1e-4, atol=1e-12)


def test_wmv_stops_patience_after_minimum_and_returns_output_there():
    outs = _sequence(600, [150, 300])
    w, p = 20, 100
    rule = VarianceStop(2, StopSettings(window=w, patience=p))
    flags = _feed(rule, outs)
    output, detected = rule.result()
    var = np.array(rule.variance)
    for g in range(2):
        # the detected point is the minimum of the variance up to the stop, for each problem
        stop = int(rule.stopped_at[g])
        seen = var[var[:, 0] <= stop]
        assert detected[g] == int(seen[np.argmin(seen[:, 1 + g]), 0])
        assert stop == detected[g] + p
        assert not bool(flags[stop - 2][g]) and bool(flags[stop - 1][g])
        torch.testing.assert_close(output[g], outs[detected[g] - 1, g])
    assert abs(detected[0] - 150) < 40 and abs(detected[1] - 300) < 40
    assert rule.stopped_at[0] < rule.stopped_at[1]  # each problem stops on its own


def test_min_iterations_ignores_early_minima():
    outs = _sequence(500, [60])
    rule = VarianceStop(1, StopSettings(window=20, patience=100, min_iterations=250))
    _feed(rule, outs)
    assert rule.result()[1][0] >= 250
    early = VarianceStop(1, StopSettings(window=20, patience=100))
    _feed(early, outs)
    assert early.result()[1][0] < 120


def test_emv_variant_finds_the_minimum_without_a_window():
    outs = _sequence(600, [250])
    rule = VarianceStop(1, StopSettings(variant="emv", window=20, patience=150))
    _feed(rule, outs)
    assert not hasattr(rule.tracker, "buf")
    assert abs(rule.result()[1][0] - 250) < 60
    assert rule.settings.weight == pytest.approx(2 / 21)


def test_window_output_is_the_mean_of_the_window():
    outs = _sequence(200, [100])
    rule = VarianceStop(1, StopSettings(window=10, patience=50, output="window"))
    _feed(rule, outs)
    out, (it,) = rule.result()
    torch.testing.assert_close(out[0], outs[it - 10:it, 0].mean(0), rtol=1e-5, atol=1e-6)


def test_short_fit_returns_last_output():
    outs = _sequence(5, [3])
    rule = VarianceStop(1, StopSettings(window=10))
    _feed(rule, outs)
    out, its = rule.result()
    assert its == [5]
    torch.testing.assert_close(out, outs[-1])


def test_rule_names_and_validation():
    assert isinstance(make_stop_rule("auto", 2), VarianceStop)
    assert isinstance(make_stop_rule("fixed", 2), FixedStop)
    assert isinstance(make_stop_rule("oracle", 2), OracleStop)
    with pytest.raises(ValueError, match="unknown stopping rule 'soon'"):
        make_stop_rule("soon", 1)
    for bad, match in ((dict(variant="median"), "variant"), (dict(window=1), "window"),
                       (dict(patience=0), "patience"), (dict(output="best"), "output"),
                       (dict(min_iterations=-1), "min_iterations"), (dict(alpha=1.5), "alpha")):
        with pytest.raises(ValueError, match=match):
            StopSettings(**bad).validate()


def test_make_config_stopping_options():
    cfg = make_config("denoise", stopping=dict(patience=50, variant="emv"))
    assert cfg.stop == "auto" and cfg.stopping.patience == 50 and cfg.stopping.variant == "emv"
    assert isinstance(cfg.stop_rule(3), VarianceStop) and cfg.stop_rule(3).settings.patience == 50
    with pytest.raises(ValueError, match="unknown stopping option"):
        make_config("denoise", stopping=dict(wait=3))


TINY = dict(channels_down=(8, 16, 16), channels_up=(8, 16, 16), channels_skip=(4, 4, 4), code_channels=8)


def test_auto_stop_in_a_real_fit_stops_early_and_restores():
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    clean = (0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy))[None, None]
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
    cfg = make_config("denoise", iterations=800, network=TINY, lr=0.02,
                      stopping=dict(window=20, patience=100, min_iterations=0, output="raw"))
    problem = build_problem(cfg, noisy, seeds=[0], ground_truth=clean)
    rule = cfg.stop_rule(1)
    result = drain(fit(problem, cfg.fit, rule, device=torch.device("cpu")))
    assert result.iterations < 800 and result.iterations == result.stop_iterations[0] + 100
    gain = float(psnr(torch.from_numpy(result.output), clean)[0] - psnr(noisy, clean)[0])
    assert gain > 7  # the oracle gains about 10 dB on this image (peak near iteration 250)
    # the same fit scored by the evaluation rule gives the same automatic result
    both = EvaluationStop(1, [cfg.stopping])
    drain(fit(build_problem(cfg, noisy, seeds=[0], ground_truth=clean), cfg.fit, both,
              device=torch.device("cpu")))
    out, its = both.autos[0].result()
    assert its == result.stop_iterations
    np.testing.assert_allclose(out.numpy(), result.output, atol=1e-6)


def test_data_fit_rule_stops_each_problem_when_its_smoothed_loss_reaches_the_target():
    t = np.arange(1, 201, dtype=np.float64)
    losses = np.stack([0.02 * np.exp(-t / 40) + 0.01, 0.02 * np.exp(-t / 80) + 0.01,
                       np.full_like(t, 0.05)], axis=1)  # fast, slow, never
    target = 0.0125
    smooth = smoothed_loss(losses)
    expected = [int(np.argmax(smooth[:, g] <= target)) + 1 for g in range(2)]
    rule = DataFitStop(3, target)
    outs = torch.arange(1, 201, dtype=torch.float32)[:, None, None, None, None].expand(200, 3, 1, 2, 2)
    stopped = []
    for i in range(200):
        done = rule.observe(i + 1, outs[i], outs[i], None, torch.from_numpy(losses[i]).float())
        stopped.append(done.tolist())
    output, its = rule.result()
    assert its[:2] == expected and its[2] == 200 and expected[0] < expected[1] < 200
    assert stopped[expected[0] - 1] == [True, False, False] and stopped[-1] == [True, True, False]
    # each problem returns the candidate of the iteration it stopped at; the last for the third
    assert output[:, 0, 0, 0].tolist() == [float(expected[0]), float(expected[1]), 200.0]
    with pytest.raises(ValueError, match="loss"):
        DataFitStop(1, 0.01).observe(1, outs[0, :1], outs[0, :1], None)
    with pytest.raises(ValueError, match="positive"):
        DataFitStop(1, 0.0)


def _feed_gated(rule, outputs: torch.Tensor, opens: list[int]) -> None:
    """Feed ``outputs`` with a loss that falls to its gate's target at iteration ``opens[g]``."""
    for i, out in enumerate(outputs, start=1):
        loss = torch.tensor([1.0 + o - i for o in opens], dtype=torch.float64)  # <= 1 from iteration o on
        rule.observe(i, out, out, None, loss)


def test_gated_variance_rule_is_the_variance_rule_once_its_gate_is_open():
    """The gate open before the variance minimum: the same stops and outputs as ES-EMV."""
    outs = _sequence(600, [150, 300])
    settings = StopSettings(window=20, patience=100, min_iterations=0)
    plain, gated = VarianceStop(2, settings), GatedVarianceStop(2, settings, DataFitStop(2, 1.0, span=1))
    _feed(plain, outs)
    _feed_gated(gated, outs, [40, 120])
    (po, pi), (go, gi) = plain.result(), gated.result()
    assert gi == pi and gated.stopped_at.tolist() == plain.stopped_at.tolist()
    torch.testing.assert_close(go, po, rtol=0, atol=0)


def test_gated_variance_rule_searches_only_after_its_gate_and_returns_the_last_output_without_it():
    """An early variance minimum (150) before the gate opens (400) is skipped; a problem whose
    gate never opens is not stopped and returns its last output."""
    outs = _sequence(600, [150, 150])
    settings = StopSettings(variant="wmv", window=20, patience=100, min_iterations=0, output="raw")
    plain, gated = VarianceStop(2, settings), GatedVarianceStop(2, settings, DataFitStop(2, 1.0, span=1))
    _feed(plain, outs)
    _feed_gated(gated, outs, [400, 10_000])
    _, pi = plain.result()
    out, gi = gated.result()
    assert all(abs(i - 150) < 40 for i in pi)
    assert 400 <= gi[0] and int(gated.stopped_at[0]) in (0, gi[0] + 100)
    assert gi[1] == 600 and int(gated.stopped_at[1]) == 0 and not bool(gated.done[1])
    torch.testing.assert_close(out[1], outs[-1, 1])
    torch.testing.assert_close(out[0], outs[gi[0] - 1, 0])
