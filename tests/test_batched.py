"""Many problems in one batch: batched fits equal sequential ones; warm starts; batch sizes."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_dip import api
from napari_dip.api import WARM_LR_RAMP, SliceDone, SliceProgress, auto_batch_size, run
from napari_dip.core import fit as fit_module
from napari_dip.core.fit import drain, fit, parallel_groups, problem_bytes
from napari_dip.core.nets import SkipConfig, SkipNet, build_network
from napari_dip.core.nets.factory import copy_problem
from napari_dip.core.operators import Identity, Mask
from napari_dip.core.stopping import DataFitStop, smoothed_loss
from napari_dip.core.task import build_problem, make_config

TINY = SkipConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2), code_channels=4)
CPU = torch.device("cpu")


def _stack(n=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    clean = np.stack([0.5 + 0.3 * np.sin((4 + k) * xx) * np.cos(3 * yy) for k in range(n)]).astype(np.float32)
    return clean, (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)


class _Spike:
    """Identity, except that at call ``at`` the problems in ``which`` see a far-off output
    (their loss jumps, as after a bad step)."""

    def __init__(self, at: int, which: list[int]):
        self.at, self.which, self.calls = at, which, 0

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.at and self.which:
            x = x.clone()
            x[self.which] = x[self.which] * 0 + 5
        return x


def _fit(config, observed, seeds, spike=None, parallel=1):
    problem = build_problem(config, torch.from_numpy(observed), seeds=seeds)
    if spike is not None:
        problem.operator = spike
    settings = replace(config.fit, parallel=parallel)
    return drain(fit(problem, settings, config.stop_rule(len(seeds)), device=CPU))


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_batched_fit_equals_sequential_fits_per_problem(parallel):
    config = make_config("denoise", network=TINY, iterations=20, stop="fixed", precision="fp32")
    _, noisy = _stack(3)
    seeds = [1, 2, 3]
    together = _fit(config, noisy[:, None], seeds, parallel=parallel)
    alone = [_fit(config, noisy[i:i + 1, None], [s]) for i, s in enumerate(seeds)]
    for i, single in enumerate(alone):
        np.testing.assert_allclose(together.output[i], single.output[0], atol=2e-5)
        np.testing.assert_allclose(together.loss_curve[:, i], single.loss_curve[:, 0], rtol=1e-4)


@pytest.mark.parametrize("parallel", [1, 2])
def test_the_slices_of_a_stack_share_their_code_and_each_fits_as_alone(parallel, monkeypatch):
    # api.run gives every slice of a stack the same seed, hence one code and one noise stream
    config = make_config("denoise", network=TINY, iterations=20, stop="fixed", precision="fp32")
    _, noisy = _stack(3)
    seen = []  # (problems in the network, codes it was given)
    real = SkipNet.forward

    def forward(net, code):
        seen.append((net.groups, len(code)))
        return real(net, code)

    monkeypatch.setattr(SkipNet, "forward", forward)
    together = _fit(config, noisy[:, None], [7, 7, 7], parallel=parallel)
    assert max(groups for groups, _ in seen) > 1 and {codes for _, codes in seen} == {1}
    alone = [_fit(config, noisy[i:i + 1, None], [7]) for i in range(3)]
    for i, single in enumerate(alone):
        np.testing.assert_allclose(together.output[i], single.output[0], atol=2e-5)
        np.testing.assert_allclose(together.loss_curve[:, i], single.loss_curve[:, 0], rtol=1e-4)
    seen.clear()
    _fit(config, noisy[:, None], [7, 7, 8], parallel=parallel)  # other seeds: a code each
    assert all(codes == groups for groups, codes in seen)


def test_parallel_groups_follow_the_setting_and_the_threads(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert parallel_groups(3, cpu, 8) == 3 and parallel_groups(3, cpu, 2) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert parallel_groups(0, cpu, 8) == 4 and parallel_groups(0, cpu, 1) == 1
    assert parallel_groups(0, gpu, 8) == 1 and parallel_groups(2, gpu, 8) == 2
    with pytest.raises(ValueError, match="parallel"):
        replace(make_config("denoise").fit, parallel=-1).validate()


def test_parallel_groups_run_at_once_on_their_share_of_the_threads(monkeypatch):
    """Two groups step in two threads at the same time, each on half the torch threads, and
    the caller's thread count is as before afterwards."""
    import threading
    config = make_config("denoise", network=TINY, iterations=3, stop="fixed", precision="fp32")
    _, noisy = _stack(4)
    seen, both = set(), threading.Barrier(2, timeout=30)
    original = fit_module._step

    def step(a, *args):
        both.wait()  # fails (times out) unless the two groups step concurrently
        seen.add((threading.get_ident(), torch.get_num_threads(), a.n))
        return original(a, *args)

    monkeypatch.setattr(fit_module, "_step", step)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _fit(config, noisy[:, None], [1, 2, 3, 4], parallel=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len({t for t, _, _ in seen}) == 2 and {(k, n) for _, k, n in seen} == {(1, 2)}


def test_a_stopped_parallel_fit_returns_its_result_and_leaves_no_threads_behind():
    import threading
    config = make_config("denoise", network=TINY, iterations=50, stop="fixed", precision="fp32")
    _, noisy = _stack(4)
    problem = build_problem(config, torch.from_numpy(noisy[:, None]), seeds=[1, 2, 3, 4])
    before = threading.active_count()
    calls = []
    gen = fit(problem, replace(config.fit, parallel=2), config.stop_rule(4), device=CPU,
              cancel=lambda: calls.append(1) or len(calls) > 5)
    result = drain(gen)
    assert result.cancelled and result.iterations == 5 and result.output.shape == (4, 1, 16, 16)
    assert result.fitted_iterations == [5] * 4 and np.isfinite(result.output).all()
    assert threading.active_count() == before
    # closing the generator mid-fit (a napari worker that is quit) shuts the pool down too
    gen = fit(problem, replace(config.fit, parallel=2), config.stop_rule(4), device=CPU)
    next(gen)
    assert threading.active_count() > before
    gen.close()
    assert threading.active_count() == before


def test_a_loss_jump_restarts_only_its_own_problem():
    config = make_config("denoise", network=TINY, iterations=12, stop="fixed", precision="fp32")
    _, noisy = _stack(2)
    together = _fit(config, noisy[:, None], [1, 2], spike=_Spike(6, [0]))
    first = _fit(config, noisy[:1, None], [1], spike=_Spike(6, [0]))
    second = _fit(config, noisy[1:, None], [2])
    assert together.restarts == first.restarts == 1 and second.restarts == 0
    # the jumped iteration repeats the last good loss
    assert together.loss_curve[5, 0] == together.loss_curve[4, 0]
    for i, single in enumerate((first, second)):
        np.testing.assert_allclose(together.output[i], single.output[0], atol=2e-5)
        np.testing.assert_allclose(together.loss_curve[:, i], single.loss_curve[:, 0], rtol=1e-4)


def _weights(config, observed, seeds, spike=None):
    """The per-problem weight rows (G, ...) of every parameter after a fit."""
    problem = build_problem(config, torch.from_numpy(observed), seeds=seeds)
    if spike is not None:
        problem.operator = spike
    drain(fit(problem, config.fit, config.stop_rule(len(seeds)), device=CPU))
    return [p.detach().unflatten(0, (len(seeds), -1)) for p in problem.network.parameters()]


def test_a_loss_jump_puts_the_weights_back_exactly_where_the_last_snapshot_was():
    # the snapshot of iteration 10 holds the weights after 9 steps; a jump at 15 must leave
    # its problem there, not where Adam's momentum carries the restored weights
    _, noisy = _stack(2)
    config = make_config("denoise", network=TINY, iterations=15, stop="fixed", precision="fp32", lr=0.05)
    jumped = _weights(config, noisy[:, None], [1, 2], spike=_Spike(15, [0]))
    nine = _weights(replace(config, fit=replace(config.fit, iterations=9)), noisy[:, None], [1, 2])
    clean_run = _weights(config, noisy[:, None], [1, 2])
    for after_jump, at_nine, undisturbed in zip(jumped, nine, clean_run):
        torch.testing.assert_close(after_jump[0], at_nine[0], rtol=0, atol=0)
        torch.testing.assert_close(after_jump[1], undisturbed[1], rtol=1e-5, atol=1e-6)


class _Spikes:
    """Identity, except that at call ``at[g]`` problem ``g`` sees a far-off output."""

    def __init__(self, at: list[int]):
        self.at, self.calls = at, 0

    def __call__(self, x):
        self.calls += 1
        hit = [g for g, a in enumerate(self.at) if a == self.calls]
        if hit:
            x = x.clone()
            x[hit] = x[hit] * 0 + 5
        return x


def test_a_jump_of_one_problem_does_not_cancel_the_snapshot_of_another():
    # problem 1 jumps at iteration 10, when the snapshots are taken; problem 0 still takes
    # its own (the weights after 9 steps) and falls back to it when it jumps at 15, as alone
    _, noisy = _stack(2)
    config = make_config("denoise", network=TINY, iterations=15, stop="fixed", precision="fp32", lr=0.05)
    jumped = _weights(config, noisy[:, None], [1, 2], spike=_Spikes([15, 10]))
    nine = _weights(replace(config, fit=replace(config.fit, iterations=9)), noisy[:, None], [1, 2])
    for after_jump, at_nine in zip(jumped, nine):
        torch.testing.assert_close(after_jump[0], at_nine[0], rtol=0, atol=0)


def test_falling_back_restores_the_saved_adam_moments_of_those_problems_only():
    from napari_dip.core.scheduler import LayoutAdam
    w = torch.nn.Parameter(torch.zeros(4, 3))  # 2 problems of 2 rows each
    opt = LayoutAdam([w], lr=0.1, device=CPU)

    def step(g):
        w.grad = torch.full_like(w, g)
        opt.step(0.1)

    step(1.0)
    opt.save(torch.tensor([True, True]), 2)
    saved = {k: v.clone() for k, v in opt.optimizer.state[opt.views[0]].items() if v.ndim}
    step(-3.0)
    step(2.0)
    opt.fall_back(torch.tensor([True, False]), 2)
    state = opt.optimizer.state[opt.views[0]]
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(state[key][:2], saved[key][:2], rtol=0, atol=0)
        assert not torch.allclose(state[key][2:], saved[key][2:])


def test_a_loss_that_is_not_finite_counts_as_a_jump():
    class _NaN(_Spike):
        def __call__(self, x):
            self.calls += 1
            return x * float("nan") if self.calls == self.at else x

    config = make_config("denoise", network=TINY, iterations=12, stop="fixed", precision="fp32")
    _, noisy = _stack(1)
    result = _fit(config, noisy[:, None], [1], spike=_NaN(6, [0]))
    assert result.restarts == 1 and np.isfinite(result.loss_curve).all() and np.isfinite(result.output).all()


def test_run_in_batches_gives_the_slices_of_run_one_at_a_time():
    clean, noisy = _stack(5)
    config = make_config("denoise", network=TINY, iterations=12, stop="fixed", precision="fp32",
                         warm_start=False)
    events = []
    batched, report = drain(run(config, noisy, device="cpu", batch_size=2), events.append)
    single, report1 = drain(run(config, noisy, device="cpu", batch_size=1))
    np.testing.assert_allclose(batched, single, atol=2e-5)
    progress = [e for e in events if isinstance(e, SliceProgress)]
    assert len(progress) == 12 * 3  # one event per iteration per batch: batches of 2, 2, 1
    assert progress[0].slices == (0, 1) and progress[-1].slices == (4,)
    assert len(progress[0].progress.loss) == 2
    assert [e.slice for e in events if isinstance(e, SliceDone)] == [0, 1, 2, 3, 4]
    assert report["batch_size"] == 2 and report1["batch_size"] == 1
    assert [s["batch"] for s in report["slices"]] == [2, 2, 2, 2, 1]


def test_warm_start_copies_the_last_fitted_problem_into_every_problem():
    source = build_network(lambda g: TINY.build(1, g), [4, 5, 6])
    target = build_network(lambda g: TINY.build(1, g), [0, 0])
    copy_problem(source, 2, 3, target)
    single = build_network(lambda g: TINY.build(1, g), [6])
    code = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        out = target(torch.cat([code, code]))
        ref = single(code)
    torch.testing.assert_close(out[0], ref[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[1], ref[0], atol=1e-5, rtol=1e-4)


def test_warm_started_stack_starts_each_slice_from_the_slice_before():
    clean, noisy = _stack(3)
    config = make_config("denoise", network=TINY, iterations=120, stop="fixed", precision="fp32")
    cold, cold_report = drain(run(config, noisy, ground_truth=clean, device="cpu", batch_size=1,
                                  warm_start=False))
    warm, warm_report = drain(run(config, noisy, ground_truth=clean, device="cpu", batch_size=1))
    assert config.warm_start  # denoising warm-starts stacks by default
    np.testing.assert_array_equal(cold[0], warm[0])  # the first slice starts cold either way
    assert not np.allclose(cold[1:], warm[1:])
    assert [s["warm_start"] for s in warm_report["slices"]] == [False, True, True]
    assert warm_report["warm_start"] and not cold_report["warm_start"]
    # warm slices stop once their data fit matches the first slice's, before the cold count,
    # at about the same quality
    target = warm_report["warm_target_loss"]
    first_loss = warm_report["slices"][0]["final_loss"]
    assert 0 < target < 2 * first_loss
    warm_its = [s["stop_iteration"] for s in warm_report["slices"][1:]]
    assert max(warm_its) < 120
    assert np.mean([s["psnr"] for s in warm_report["slices"][1:]]) > np.mean(
        [s["psnr"] for s in cold_report["slices"][1:]]) - 0.5


def test_warm_starts_need_a_first_slice_whose_automatic_rule_stopped_before_the_cap():
    from napari_dip.api import WARM_OFF_AT_CAP
    from napari_dip.core.stopping import StopSettings
    _, noisy = _stack(3)
    # patience longer than the cap: the rule cannot fire, the first slice's data fit is no
    # stopping point, and the others are fitted cold, as a full-size stack's are
    capped = make_config("denoise", network=TINY, iterations=40, precision="fp32",
                         stopping=StopSettings(variant="emv", window=5, patience=300))
    _, report = drain(run(capped, noisy, device="cpu", batch_size=1, warm_start=True))
    assert report["warm_start"] is False and report["warm_start_off"] == WARM_OFF_AT_CAP
    assert [s["warm_start"] for s in report["slices"]] == [False, False, False]
    assert [s["fitted_iterations"] for s in report["slices"]] == [40, 40, 40]
    # a rule that fires before the cap keeps the warm start
    fires = make_config("denoise", network=TINY, iterations=200, precision="fp32",
                        stopping=StopSettings(variant="emv", window=5, patience=5))
    _, report = drain(run(fires, noisy, device="cpu", batch_size=1, warm_start=True))
    assert report["slices"][0]["fitted_iterations"] < 200
    assert report["warm_start"] is True and "warm_start_off" not in report
    assert [s["warm_start"] for s in report["slices"]] == [False, True, True]


def test_warm_starts_are_the_denoising_default_and_can_be_turned_off():
    assert make_config("denoise").warm_start and make_config("denoise", preset="paper").warm_start
    assert not make_config("superres", factor=2).warm_start and not make_config("inpaint").warm_start
    _, noisy = _stack(3)
    for option, expected in ((None, True), (False, False)):
        config = make_config("denoise", network=TINY, iterations=4, stop="fixed", warm_start=option)
        _, report = drain(run(config, noisy, device="cpu", batch_size=1))
        assert report["warm_start"] is expected
        assert [s["warm_start"] for s in report["slices"]] == [False, expected, expected]
        # warm fits ramp their learning rate up, cold ones do not
        assert [s["lr_ramp"] for s in report["slices"]] == [0] + [WARM_LR_RAMP if expected else 0] * 2
    ramped = make_config("denoise", network=TINY, iterations=4, stop="fixed")
    ramped = replace(ramped, fit=replace(ramped.fit, lr_ramp=7))
    _, report = drain(run(ramped, noisy, device="cpu", batch_size=1))
    assert [s["lr_ramp"] for s in report["slices"]] == [7, 7, 7]  # a configured ramp is kept
    _, report = drain(run(make_config("denoise", network=TINY, iterations=4, stop="fixed"), noisy,
                          device="cpu", batch_size=1, warm_start=False))  # the call overrides the config
    assert not report["warm_start"]


def test_warm_start_with_batches_fits_the_first_slice_alone_then_batches_from_it():
    clean, noisy = _stack(5)
    config = make_config("denoise", network=TINY, iterations=60, stop="fixed", precision="fp32")
    events = []
    gen = run(config, noisy, ground_truth=clean, device="cpu", batch_size=2, warm_start=True)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            out, report = stop.value
            break
    records = report["slices"]
    assert [r["slice"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["batch"] for r in records] == [1, 2, 2, 2, 2]
    assert [r["warm_start"] for r in records] == [False, True, True, True, True]
    assert {e.slices for e in events if isinstance(e, SliceProgress)} == {(0,), (1, 2), (3, 4)}
    assert records[0]["stop_iteration"] == 60 and all(r["stop_iteration"] <= 60 for r in records[1:])
    assert out.shape == noisy.shape and np.isfinite(out).all()
    # oracle evaluation keeps the oracle for warm slices (no data-fit rule)
    oracle = make_config("denoise", network=TINY, iterations=20, stop="oracle", precision="fp32")
    _, rep = drain(run(oracle, noisy[:3], ground_truth=clean[:3], device="cpu", batch_size=2, warm_start=True))
    assert "warm_target_loss" in rep and all(r["psnr"] >= 0 for r in rep["slices"])


def test_automatic_batch_size_follows_free_memory_and_slice_size(monkeypatch):
    import psutil
    config = make_config("denoise", network=TINY)
    need = problem_bytes(lambda: TINY.build(1, 1), TINY.code_shape(64, 64))
    free = {"available": 4 * need * 3 + 1}
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), free)())
    assert auto_batch_size(config, 1, (64, 64), CPU) == 3  # a quarter of free memory
    free["available"] = 10 ** 13
    assert auto_batch_size(config, 1, (64, 64), CPU) == 2 ** 17 // (64 * 64)  # CPU pixel cap
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert auto_batch_size(config, 1, (512, 512), CPU) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # large slices: one per thread
    assert auto_batch_size(config, 1, (512, 512), CPU) == 4
    free["available"] = 1
    assert auto_batch_size(config, 1, (64, 64), CPU) == 1


def test_memory_per_problem_grows_with_pixels_and_not_with_the_volume():
    small = problem_bytes(lambda: TINY.build(1, 1), TINY.code_shape(32, 32))
    large = problem_bytes(lambda: TINY.build(1, 1), TINY.code_shape(64, 64))
    weights = 16 * sum(p.numel() for p in TINY.build(1, 1).parameters())
    assert 3.5 < (large - weights) / (small - weights) < 4.5  # activations scale with pixels


def test_batch_size_is_validated():
    _, noisy = _stack(2)
    config = make_config("denoise", network=TINY, iterations=2)
    with pytest.raises(ValueError, match="batch_size"):
        drain(run(config, noisy, device="cpu", batch_size=0))


def test_denoise_passes_batch_options_through():
    clean, noisy = _stack(2)
    out, report = api.denoise(noisy, network=dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2),
                                                  code_channels=4),
                              iterations=3, stop="fixed", batch_size=1, warm_start=True, return_report=True)
    assert out.shape == noisy.shape and report["batch_size"] == 1 and report["warm_start"]
    _, report = api.denoise(_stack(3)[1], network=dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2),
                                                    code_channels=4),
                            iterations=2, stop="fixed", batch_size=3, parallel=2, return_report=True)
    assert report["batch_size"] == 3 and report["parallel"] == 2


def test_automatic_precision_is_chosen_per_fit(monkeypatch):
    """With precision 'auto' each fit gets the precision that pays for its size: a warm
    start's first slice and a last, smaller batch of 64 x 64 slices run in fp32, full batches
    in bf16; the report says which for every slice."""
    import napari_dip.core.fit as core_fit
    monkeypatch.setattr(core_fit, "cpu_has_fast_bf16", lambda: True)
    seen = []
    real = api.fit

    def spy(problem, settings, rule, **kw):
        seen.append((problem.n, settings.precision))
        return real(problem, settings, rule, **kw)

    monkeypatch.setattr(api, "fit", spy)
    _, noisy = _stack(6, size=64)
    config = make_config("denoise", network=TINY, iterations=2, stop="fixed")
    _, report = drain(run(config, noisy, device="cpu", batch_size=4, warm_start=True))
    assert seen == [(1, "fp32"), (4, "bf16"), (1, "fp32")]
    assert report["precision"] == "bf16"  # that of a full batch
    assert [r["precision"] for r in report["slices"]] == ["fp32"] + ["bf16"] * 4 + ["fp32"]
    seen.clear()
    _, report = drain(run(config, noisy, device="cpu", batch_size=1))
    assert report["precision"] == "fp32" and {p for _, p in seen} == {"fp32"}  # 64 x 64 alone: fp32
    seen.clear()
    forced = make_config("denoise", network=TINY, iterations=2, stop="fixed", precision="bf16")
    drain(run(forced, noisy, device="cpu", batch_size=4, warm_start=True))
    assert {p for _, p in seen} == {"bf16"}  # a forced precision holds for every fit


def _data_fit_run(config, observed, seeds, target, parallel=1):
    """A fit whose problems stop at the data fit ``target`` (None: at the iteration limit)."""
    problem = build_problem(config, torch.from_numpy(observed), seeds=seeds)
    rule = config.stop_rule(len(seeds)) if target is None else DataFitStop(len(seeds), target)
    return drain(fit(problem, replace(config.fit, parallel=parallel), rule, device=CPU)), problem


# with 5 problems in 2 groups, the groups are rebalanced as problems finish: a new group
# takes problems from both old ones (weights, Adam moments, fallback weights)
@pytest.mark.parametrize("parallel, count", [(1, 3), (2, 5)])
def test_finished_problems_leave_the_batch_and_the_rest_fit_as_alone(parallel, count):
    config = make_config("denoise", network=TINY, iterations=60, stop="fixed", precision="fp32")
    _, noisy = _stack(count)
    seeds = list(range(1, count + 1))
    fixed, _ = _data_fit_run(config, noisy[:, None], seeds, None)
    # a data fit the problems reach at different iterations
    target = float(np.max(smoothed_loss(fixed.loss_curve)[30])) * 1.01
    together, packed = _data_fit_run(config, noisy[:, None], seeds, target, parallel)
    alone = [_data_fit_run(config, noisy[i:i + 1, None], [s], target) for i, s in enumerate(seeds)]
    stops = together.stop_iterations
    assert len(set(stops)) > 1 and max(stops) < 60
    assert together.fitted_iterations == stops and max(stops) == together.iterations
    single = SkipConfig.build(TINY, 1)
    for i, (result, problem) in enumerate(alone):
        assert result.stop_iterations[0] == stops[i]
        # (groups run on fewer torch threads than the fit alone: other summation orders)
        np.testing.assert_allclose(together.output[i], result.output[0], atol=1e-4)
        np.testing.assert_allclose(together.loss_curve[:stops[i], i], result.loss_curve[:, 0], rtol=1e-4)
        # the packed network ends with each problem's last weights (what a warm start copies)
        copy_problem(packed.network, i, count, single)
        with torch.no_grad():
            np.testing.assert_allclose(single(problem.code).numpy(), problem.network(problem.code).numpy(),
                                       atol=1e-4)


def test_the_operator_of_the_problems_left_in_a_batch_keeps_their_masks():
    masks = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2) > 0.5
    left = Mask(masks.float()).rows(torch.tensor([0, 2]))
    assert left.mask[:, 0, 0, 0].tolist() == [0.0, 1.0]
    shared = Mask(torch.ones(1, 1, 2, 2))
    identity = Identity()
    assert shared.rows(torch.tensor([1])) is shared and identity.rows(torch.tensor([0])) is identity
