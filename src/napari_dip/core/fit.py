"""The one fitting loop: minimise ||A(G_theta(z)) - y||^2 over theta for G problems at once.

:func:`fit` is a generator. It yields a :class:`Progress` after every iteration (so a caller
can show progress, draw previews and cancel between iterations) and returns a
:class:`FitResult`::

    gen = fit(problem, settings, rule, device=device)
    result = drain(gen)                      # or: for event in gen: ...
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Generator, Sequence

import numpy as np
import torch
from torch import nn

from .metrics import psnr as psnr_fn
from .metrics import ssim as ssim_fn
from .nets.blocks import count_parameters

PRECISIONS = ("auto", "fp32", "bf16")
SNAPSHOT_EVERY = 10  # iterations between copies of the weights a loss jump falls back to
LAYOUTS = ("auto", "channels_last", "default")


@dataclass(frozen=True)
class FitSettings:
    """Optimisation settings shared by every task.

    ``precision``: ``auto`` (bfloat16 autocast on CUDA GPUs that support it and on CPUs with
    AMX or AVX512-BF16 for batches of at least 128 x 128 pixels, fp32 elsewhere; see
    :func:`resolve_precision`), ``bf16`` or ``fp32``; weights and optimiser state
    stay fp32. ``ema``: weight of the running average of outputs that the fixed and oracle
    rules return (ramped up as min(ema, (1 + t) / (10 + t)), so the first outputs of a fit
    are soon forgotten); 0 returns the raw output. ``layout``: ``auto`` (channels-last with bfloat16, the default layout in fp32,
    where channels-last BatchNorm loses precision), ``channels_last`` or ``default``.
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

    def validate(self) -> "FitSettings":
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.code_noise < 0:
            raise ValueError(f"code_noise must be >= 0, got {self.code_noise}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of "
                             f"{', '.join(PRECISIONS)}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {', '.join(LAYOUTS)}")
        return self


@dataclass
class Problem:
    """G independent problems: a packed network, codes, an operator, observations."""

    network: nn.Module
    code: torch.Tensor            # (G, Cz, H, W)
    operator: Callable[[torch.Tensor], torch.Tensor]
    observed: torch.Tensor        # (G, C, h, w)
    seeds: Sequence[int]
    ground_truth: torch.Tensor | None = None  # (G, C, H, W)

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


class LayoutAdam:
    """Adam (fused on CPU and CUDA) stepping on contiguous views of the parameters.

    A channels-last 4D weight is one contiguous block in (O, kH, kW, I) order; handed to Adam
    as such, it is updated in place instead of being copied to the default layout and back
    every step (a sixth of a batched bfloat16 iteration on small images).
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, device: torch.device):
        self.params = list(params)
        self.views = [_contiguous_view(p.detach()) for p in self.params]
        fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
        self.optimizer = torch.optim.Adam(self.views, lr=lr, **fused)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p, v in zip(self.params, self.views):
            v.grad = None if p.grad is None else _contiguous_view(p.grad, like=p)
        self.optimizer.step()


def _contiguous_view(t: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``t`` as (O, kH, kW, I) if ``like`` (default: ``t``) is a channels-last 4D tensor."""
    like = t if like is None else like
    if like.ndim == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1)
    return t


def _rows(tensors: Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Views (G, ...) of packed tensors: problem g owns the g-th block of dim 0."""
    return [t.unflatten(0, (n, -1)) for t in tensors]


def problem_bytes(make: Callable[[], nn.Module], code_shape: Sequence[int]) -> int:
    """Device memory one problem of a fit needs: fp32 weights x 4 (weights, gradients, two
    Adam moments) and the activations kept for the backward pass, counted by a forward pass
    on the meta device (no memory, no compute)."""
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
    return total + 4 * out.numel() * 4 + 16 * sum(p.numel() for p in net.parameters())


def _generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s) + 1)  # distinct from the weight-initialisation stream
        gens.append(g)
    return gens


def fit(problem: Problem, settings: FitSettings, rule, *, device: torch.device,
        cancel: Callable[[], bool] | None = None) -> Generator[Progress, None, FitResult]:
    """Fit ``problem`` on ``device``; yield progress each iteration; return a FitResult.

    ``cancel`` is polled between iterations; when it returns True the loop ends and the
    result holds what the stopping rule has so far (``cancelled=True``).
    """
    settings.validate()
    amp = resolve_precision(settings.precision, device, pixels=problem.n * problem.code[0, 0].numel())
    net = problem.network.to(device, memory_format=resolve_layout(settings.layout, amp)).train()
    code = problem.code.to(device)
    y = problem.observed.to(device)
    op = problem.operator.to(device) if hasattr(problem.operator, "to") else problem.operator
    gt = None if problem.ground_truth is None else problem.ground_truth.to(device)
    if rule.needs_ground_truth and gt is None:
        raise ValueError("this stopping rule needs a ground truth")
    n = problem.n
    gens = _generators(problem.seeds, device)
    params = [p for p in net.parameters() if p.requires_grad]
    good = [p.detach().clone() for p in params]
    rows, good_rows = _rows([p.detach() for p in params], n), _rows(good, n)
    opt = LayoutAdam(params, settings.lr, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext

    losses, psnrs, ssims = [], [], []
    ema = None
    prev_loss = prev_out = None
    restarts = 0
    done = torch.zeros(n, dtype=torch.bool)
    start = time.perf_counter()
    it = 0
    cancelled = False
    for it in range(1, settings.iterations + 1):
        if cancel is not None and cancel():
            cancelled = True
            it -= 1
            break
        z = code
        if settings.code_noise > 0:
            noise = torch.stack([torch.randn(code.shape[1:], generator=g, device=device)
                                 for g in gens])
            z = code + settings.code_noise * noise
        opt.zero_grad()
        with autocast():
            out = net(z)
        out = out.float()
        per_problem = ((op(out) - y) ** 2).flatten(1).mean(1)
        per_problem.sum().backward()
        loss_now = per_problem.detach().cpu()
        out = out.detach()
        jumped = (torch.zeros(n, dtype=torch.bool) if prev_loss is None
                  else loss_now > settings.loss_jump * prev_loss)
        if bool(jumped.any()):
            # Per problem: the loss jumped, so go back to the last good weights (at most
            # SNAPSHOT_EVERY iterations old), drop this gradient and repeat the last good
            # output and loss. The optimiser still counts the step, so problems fitted in
            # one batch follow the paths they follow alone.
            restarts += int(jumped.sum())
            keep = jumped.to(device)
            with torch.no_grad():
                for r, g in zip(rows, good_rows):
                    r[keep] = g[keep]
                for grad in _rows([p.grad for p in params], n):
                    grad[keep] = 0
            out = torch.where(keep.view(-1, 1, 1, 1), prev_out, out)
            loss_now = torch.where(jumped, prev_loss, loss_now)
        elif it % SNAPSHOT_EVERY == 0:
            with torch.no_grad():
                torch._foreach_copy_(good, [p.detach() for p in params])
        opt.step()
        if hasattr(net, "dropout_off"):
            # Networks with dropout are judged with it off (one more forward pass).
            with torch.no_grad(), net.dropout_off(), autocast():
                out = torch.where(jumped.to(device).view(-1, 1, 1, 1), out, net(z).float())
        prev_loss, prev_out = loss_now, out
        reported = loss_now.tolist()
        with torch.no_grad():
            if settings.ema > 0:
                # Ramped: early outputs (and a warm start's first ones) are forgotten quickly.
                decay = min(settings.ema, (1 + it) / (10 + it))
                ema = out.clone() if ema is None else ema.mul_(decay).add_(out, alpha=1 - decay)
                candidate = ema
            else:
                candidate = out
            p = psnr_fn(candidate, gt) if gt is not None else None
            done |= rule.observe(it, out, candidate, p, loss_now)
        losses.append(reported)
        event = Progress(it, settings.iterations, reported, done=done.tolist())
        if p is not None:
            event.psnr = p.cpu().tolist()
            psnrs.append(event.psnr)
            if settings.metrics_every and (it % settings.metrics_every == 0 or it == 1):
                event.ssim = ssim_fn(candidate, gt).cpu().tolist()
                ssims.append((it, event.ssim))
        if settings.preview_every and it % settings.preview_every == 0:
            event.preview = candidate.detach().float().cpu().numpy()
        yield event
        if bool(done.all()):
            break
    output, stop_iterations = rule.result()
    if output is None:  # cancelled before the first iteration
        with torch.no_grad(), autocast():
            output = net(code).float()
        stop_iterations = [0] * n
    return FitResult(
        output=output.detach().float().cpu().numpy(),
        stop_iterations=stop_iterations,
        iterations=it,
        seconds=time.perf_counter() - start,
        parameters=count_parameters(net, n),
        loss_curve=np.asarray(losses, dtype=np.float32).reshape(-1, n),
        psnr_curve=np.asarray(psnrs, dtype=np.float32).reshape(-1, n) if psnrs else None,
        ssim_curve=ssims,
        cancelled=cancelled,
        restarts=restarts,
    )


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
