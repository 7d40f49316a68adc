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


@dataclass(frozen=True)
class FitSettings:
    """Optimisation settings shared by every task."""

    iterations: int = 3000
    lr: float = 0.01
    code_noise: float = 1 / 30
    ema: float = 0.99
    loss_jump: float = 3.0
    preview_every: int = 0
    metrics_every: int = 25
    precision: str = "fp32"

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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


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
    net = problem.network.to(device).train()
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
    opt = torch.optim.Adam(params, lr=settings.lr)
    amp = resolve_precision(settings.precision, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext

    losses, psnrs, ssims = [], [], []
    ema = None
    prev_loss = None
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
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = net(z)
        out = out.float()
        per_problem = ((op(out) - y) ** 2).flatten(1).mean(1)
        per_problem.sum().backward()
        loss_now = per_problem.detach().cpu()
        if prev_loss is not None and bool((loss_now > settings.loss_jump * prev_loss).any()):
            # The loss jumped: go back to the last good weights and skip this step.
            with torch.no_grad():
                torch._foreach_copy_(params, good)
            restarts += 1
            opt.zero_grad(set_to_none=True)
            losses.append(prev_loss.tolist())
            if psnrs:
                psnrs.append(psnrs[-1])
            yield Progress(it, settings.iterations, prev_loss.tolist(), done=done.tolist())
            continue
        with torch.no_grad():
            torch._foreach_copy_(good, params)
        opt.step()
        prev_loss = loss_now
        with torch.no_grad():
            out = out.detach()
            if settings.ema > 0:
                ema = out.clone() if ema is None else ema.mul_(settings.ema).add_(out, alpha=1 - settings.ema)
                candidate = ema
            else:
                candidate = out
            p = psnr_fn(candidate, gt) if gt is not None else None
            done |= rule.observe(it, out, candidate, p)
        losses.append(loss_now.tolist())
        event = Progress(it, settings.iterations, loss_now.tolist(), done=done.tolist())
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
