"""The one fitting loop: minimise L(A(G_theta(z)), y) over theta for G problems at once.

:func:`fit` is a generator. It yields a :class:`Progress` after every iteration (so a caller
can show progress, draw previews and cancel between iterations) and returns a
:class:`FitResult`::

    gen = fit(problem, settings, rule, device=device)
    result = drain(gen)                      # or: for event in gen: ...
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Generator, Sequence

import numpy as np
import torch
from torch import nn

from . import checks
from .losses import MSE, Loss
from .metrics import psnr as psnr_fn
from .metrics import ssim as ssim_fn
from .nets.blocks import count_parameters
from .scheduler import Group, Scheduler, per_row
from .stopping import wide_dtype
from .scheduler import LayoutAdam, parallel_groups  # noqa: F401 (public here too)

PRECISIONS = ("auto", "fp32", "bf16")
SNAPSHOT_EVERY = 10  # iterations between copies of the weights a loss jump falls back to
LAYOUTS = ("auto", "channels_last", "default")


@dataclass(frozen=True)
class FitSettings:
    """Optimisation settings shared by every task.

    ``precision``: ``auto`` (bfloat16 autocast on CUDA GPUs that support it and on CPUs with
    AMX or AVX512-BF16 for batches of at least 128 x 128 pixels, fp32 elsewhere; see
    :func:`resolve_precision`), ``bf16`` or ``fp32``; weights and optimiser state
    stay fp32. ``ema``: weight of the running average of outputs that the fixed, oracle and
    data-fit (warm start) rules return, ramped up as min(ema, (1 + t) / (3 + t)): until the
    cap, output t weighs in proportion to t + 2, so a short fit (a warm-started slice's)
    averages its path and its first outputs fade; 0 returns the raw output. ``layout``:
    ``auto`` (channels-last with bfloat16, the default layout in fp32, where channels-last
    BatchNorm loses precision), ``channels_last`` or ``default``.
    ``parallel``: how many groups of a batch are fitted at the same time, each in its own
    thread with an equal share of the CPU's threads; 0 (automatic) is one group per CPU
    thread on the CPU (small slices barely use a second core, their groups use them all) and
    1 on GPUs. Each problem's result is the same as alone, whatever the grouping.
    ``lr_ramp``: iterations over which the learning rate rises linearly to ``lr`` (step t
    uses lr * min(1, t / lr_ramp)); 0 uses ``lr`` from the start. Warm-started fits ramp:
    fresh Adam moves every weight by about ``lr`` in its first steps, which throws a fitted
    network off the solution it starts from.
    ``code_noise_side``: ``code_noise`` is the standard deviation for codes of up to this side
    squared in pixels; a larger code of H x W gets code_noise * side**2 / (H * W)
    (:meth:`code_noise_at`); 0 keeps ``code_noise`` at every size. Code noise regularises a
    small fit, but it also slows every fit down, and a large one never gets far enough to need
    it (docs/speed.md).
    """

    iterations: int = 3000
    lr: float = 0.01
    code_noise: float = 1 / 30
    ema: float = 0.99
    loss_jump: float = 3.0
    preview_every: int = 0
    metrics_every: int = 25
    precision: str = "auto"
    layout: str = "auto"
    parallel: int = 0
    lr_ramp: int = 0
    code_noise_side: int = 0

    def code_noise_at(self, height: int, width: int) -> float:
        """The code noise of a fit whose code is ``height`` x ``width`` pixels."""
        if not self.code_noise_side:
            return self.code_noise
        return self.code_noise * min(1.0, self.code_noise_side ** 2 / (height * width))

    def for_code(self, height: int, width: int) -> "FitSettings":
        """These settings with the code noise of a ``height`` x ``width`` code fixed."""
        return replace(self, code_noise=self.code_noise_at(height, width), code_noise_side=0)

    def validate(self) -> "FitSettings":
        checks.whole("iterations", self.iterations, 1)
        for name in ("lr", "code_noise", "ema", "loss_jump"):
            checks.number(name, getattr(self, name))
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.code_noise < 0:
            raise ValueError(f"code_noise must be >= 0, got {self.code_noise}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        checks.choice("precision", self.precision, PRECISIONS)
        checks.choice("layout", self.layout, LAYOUTS)
        for name in ("preview_every", "metrics_every"):
            checks.whole(name, getattr(self, name), 0)
        if isinstance(self.parallel, bool) or not isinstance(self.parallel, int) or self.parallel < 0:
            raise ValueError(f"parallel must be a whole number >= 0 (0: automatic), got {self.parallel!r}")
        if isinstance(self.lr_ramp, bool) or not isinstance(self.lr_ramp, int) or self.lr_ramp < 0:
            raise ValueError(f"lr_ramp must be a whole number of iterations >= 0, got {self.lr_ramp!r}")
        checks.whole("code_noise_side", self.code_noise_side, 0)
        return self


@dataclass
class Problem:
    """G independent problems: a packed network, codes, an operator, observations, a loss."""

    network: nn.Module
    code: torch.Tensor            # (G, Cz, H, W)
    operator: Callable[[torch.Tensor], torch.Tensor]
    observed: torch.Tensor        # (G, C, h, w)
    seeds: Sequence[int]
    ground_truth: torch.Tensor | None = None  # (G, C, H, W)
    # Builds the same architecture packing k problems; lets a fit drop finished problems.
    make_network: Callable[[int], nn.Module] | None = None
    loss: Loss = field(default_factory=MSE)  # the data fidelity (see core/losses.py)
    # All problems have one code and one noise stream (the slices of a stack, one seed):
    # networks that allow it (``shares_code``) take the code once per group. build_problem
    # sets it for one seed; whoever replaces the codes keeps it true only if they stay equal.
    shared_code: bool = False

    @property
    def n(self) -> int:
        return self.code.shape[0]


@dataclass
class Progress:
    """What the loop reports after an iteration; ``preview`` only every ``preview_every``."""

    iteration: int
    total: int
    loss: list[float]
    psnr: list[float] | None = None
    ssim: list[float] | None = None
    preview: np.ndarray | None = None  # (G, C, H, W) float32
    done: list[bool] = field(default_factory=list)


@dataclass
class FitResult:
    """The returned outputs (G, C, H, W) and how the fit went."""

    output: np.ndarray
    stop_iterations: list[int]
    iterations: int
    seconds: float
    parameters: int
    loss_curve: np.ndarray                # (iterations, G)
    psnr_curve: np.ndarray | None = None  # (iterations, G)
    ssim_curve: list[tuple[int, list[float]]] = field(default_factory=list)
    cancelled: bool = False
    restarts: int = 0
    fitted_iterations: list[int] = field(default_factory=list)  # per problem, until it was done
    code_noise: float = 0.0  # the code noise's standard deviation at this code size


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; anything else is honoured."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use auto or cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but Apple MPS is not available; use auto or cpu")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


BF16_MIN_PIXELS = 128 * 128  # below this many pixels per batch bf16 autocast does not pay on a CPU


def resolve_precision(precision: str, device: torch.device, *, pixels: int | None = None) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for plain fp32.

    ``auto`` is bfloat16 on CUDA GPUs that support it, and on CPUs with bfloat16 hardware
    when a batch has at least ``BF16_MIN_PIXELS`` pixels (``pixels``: G * H * W); smaller
    fits are bound by memory traffic and casting costs more than it saves.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_fast_bf16() and (pixels is None or pixels >= BF16_MIN_PIXELS):
        return torch.bfloat16
    return None


def resolve_layout(layout: str, amp: torch.dtype | None) -> torch.memory_format:
    """The memory format for a layout setting (``auto``: channels-last only with autocast)."""
    if layout == "channels_last" or (layout == "auto" and amp is not None):
        return torch.channels_last
    return torch.contiguous_format


def problem_bytes(make: Callable[[], nn.Module], code_shape: Sequence[int]) -> int:
    """Device memory one problem of a fit needs: fp32 weights x 7 (weights, gradients, two
    Adam moments, and the weights and moments a loss jump falls back to) and the activations
    kept for the backward pass, counted by a forward pass on the meta device (no memory, no
    compute)."""
    total = 0

    def count(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * 4
        return t

    with torch.device("meta"):
        net = make()
        code = torch.empty(1, *code_shape)
    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        out = net(code)
    return total + 4 * out.numel() * 4 + 7 * 4 * sum(p.numel() for p in net.parameters())


def _step(a: Group, it: int, settings: FitSettings, autocast, prev_out, prev_loss):
    """One iteration for the problems of ``a``: (outputs, losses, which ones jumped), all on the
    device and computed without reading anything back to the host (the loop reads once per
    iteration, see :func:`fit`). A jumped problem's weights go back to its last good ones after
    that read (:meth:`.Scheduler.fall_back`); here it repeats its last good output and loss."""
    device = a.code.device
    # Problems sharing their code take it once, with noise drawn from the first stream.
    z, streams = (a.code[:1], a.gens[:1]) if a.shared else (a.code, a.gens)
    if settings.code_noise > 0:
        noise = torch.stack([torch.randn(a.code.shape[1:], generator=g, device=device) for g in streams])
        z = z + settings.code_noise * noise
        if a.shared:  # the other streams follow it (dropout draws from each)
            state = a.gens[0].get_state()
            for g in a.gens[1:]:
                g.set_state(state)
    a.opt.zero_grad()
    with autocast():
        out = a.net(z)
    out = out.float()
    per_problem = a.loss(a.op(out), a.y)
    per_problem.sum().backward()
    loss_now = per_problem.detach()
    out = out.detach()
    if prev_loss is None:
        jumped = torch.zeros(a.n, dtype=torch.bool, device=device)
    else:  # a loss that is not finite counts as a jump: its gradient would poison the weights
        jumped = (loss_now > settings.loss_jump * prev_loss) | ~torch.isfinite(loss_now)
    if it % SNAPSHOT_EVERY == 0:
        a.snapshot(~jumped)  # the weights and moments a later jump falls back to, per problem
    a.opt.step(settings.lr * min(1.0, it / settings.lr_ramp) if settings.lr_ramp else settings.lr)
    if prev_out is not None:
        out = torch.where(per_row(jumped, out), prev_out, out)
        loss_now = torch.where(jumped, prev_loss, loss_now)
    if hasattr(a.net, "dropout_off"):
        # Networks with dropout are judged with it off (one more forward pass).
        with torch.no_grad(), a.net.dropout_off(), autocast():
            out = torch.where(per_row(jumped, out), out, a.net(z).float())
    return out, loss_now, jumped


def fit(problem: Problem, settings: FitSettings, rule, *, device: torch.device,
        cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, FitResult]:
    """Fit ``problem`` on ``device``; yield progress each iteration; return a FitResult.

    ``cancel`` is polled between iterations; when it returns True the loop ends and the
    result holds what the stopping rule has so far (``cancelled=True``). With
    ``problem.make_network`` given, the problems are fitted in ``settings.parallel`` groups at
    the same time, and problems the rule declares done stop being fitted: the rest go on in
    smaller groups, each problem exactly as it would alone (see :class:`.Scheduler`).
    ``problem.network`` ends with every problem's last weights.
    """
    settings = settings.validate().for_code(*problem.code.shape[-2:])
    n = problem.n
    amp = resolve_precision(settings.precision, device, pixels=n * problem.code[0, 0].numel())
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
    gt = None if problem.ground_truth is None else problem.ground_truth.to(device)
    if rule.needs_ground_truth and gt is None:
        raise ValueError("this stopping rule needs a ground truth")
    scheduler = Scheduler(problem, lr=settings.lr, parallel=settings.parallel, device=device,
                          layout=resolve_layout(settings.layout, amp))
    parameters = count_parameters(scheduler.network, n)

    def step(group, prev_out, prev_loss):
        return _step(group, it, settings, autocast, prev_out, prev_loss)

    losses, psnrs, ssims = [], [], []
    out = loss = mean = psnr = None
    done = torch.zeros(n, dtype=torch.bool, device=device)
    wide = wide_dtype(device)  # of the one read per iteration: exact for float32 values
    start, it, cancelled = time.perf_counter(), 0, False
    with scheduler:
        for it in range(1, settings.iterations + 1):
            if cancel is not None and cancel():
                cancelled, it = True, it - 1
                break
            # all G problems; finished ones keep theirs
            out, loss, jumped = scheduler.step(step, out, loss)
            with torch.no_grad():
                candidate = out
                if settings.ema > 0:  # ramped: weights grow with t until the cap, so early outputs fade
                    mean = candidate = scheduler.average(mean, out, min(settings.ema, (1 + it) / (3 + it)))
                if gt is not None:
                    psnr = scheduler.measure(psnr_fn, psnr, candidate, gt)
                done = done | rule.observe(it, out, candidate, psnr, loss).to(device)
                # The one read per iteration (a GPU waits for its queue here): losses, done and
                # jumped flags, and the PSNR when there is a ground truth.
                parts = [loss, done, jumped] + ([] if psnr is None else [psnr])
                values = torch.cat([p.to(wide) for p in parts]).tolist()
            event = Progress(it, settings.iterations, values[:n], done=[v > 0 for v in values[n:2 * n]])
            scheduler.fall_back([v > 0 for v in values[2 * n:3 * n]])
            losses.append(event.loss)
            if psnr is not None:
                event.psnr = values[3 * n:]
                psnrs.append(event.psnr)
                if settings.metrics_every and (it % settings.metrics_every == 0 or it == 1):
                    event.ssim = ssim_fn(candidate, gt).cpu().tolist()
                    ssims.append((it, event.ssim))
            if settings.preview_every and it % settings.preview_every == 0:
                event.preview = candidate.detach().float().cpu().numpy()
            yield event
            if all(event.done):
                break
            scheduler.retire(event.done)
    scheduler.store()
    output, stop_iterations = rule.result()
    if output is None:  # cancelled before the first iteration
        with torch.no_grad(), autocast():
            output = scheduler.network(problem.code.to(device)).float()
        stop_iterations = [0] * n
    return FitResult(
        output=output.detach().float().cpu().numpy(), stop_iterations=stop_iterations,
        iterations=it, seconds=time.perf_counter() - start, parameters=parameters,
        loss_curve=np.asarray(losses, dtype=np.float32).reshape(-1, n),
        psnr_curve=np.asarray(psnrs, dtype=np.float32).reshape(-1, n) if psnrs else None,
        ssim_curve=ssims, cancelled=cancelled, restarts=scheduler.restarts,
        fitted_iterations=scheduler.fitted.tolist(), code_noise=settings.code_noise)


def drain(gen: Generator[Progress, None, FitResult],
          on_progress: Callable[[Progress], None] | None = None) -> FitResult:
    """Run a fitting generator to the end and return its result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)
