"""Stopping rules: when to stop fitting and which output to return.

A rule sees, after every iteration, the raw network output and the candidate result (the
moving average of outputs when averaging is on) for each of the G problems, all as
(G, C, H, W) tensors, and the PSNR of the candidate against a ground truth when one is
given. It says which problems are done and keeps, per problem, the output it will return.

``auto`` is ES-WMV (Wang et al., "Early Stopping for Deep Image Prior", TMLR 2023): the
variance of the last W raw outputs falls while the network fits the image and rises once it
starts fitting the noise; stop when it has not reached a new minimum for P iterations and
return the output at the minimum. Its memory-light variant (``emv``) replaces the window by
an exponential moving mean and variance.

Rules keep their state on the outputs' device and decide there: ``observe`` reads nothing
back to the host (the fitting loop reads once per iteration, see :func:`~.fit.fit`), so a GPU
is never made to wait by a rule; ``result`` reads once, at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .scheduler import per_row

STOP_RULES = ("fixed", "oracle", "auto")
STOP_VARIANTS = ("wmv", "emv")
STOP_OUTPUTS = ("candidate", "raw", "window")


@dataclass(frozen=True)
class StopSettings:
    """Options of the automatic rule.

    ``variant``: ``wmv`` (windowed variance of the last ``window`` outputs) or ``emv``
    (exponential moving variance with weight ``alpha``; default ``2 / (window + 1)``, the
    same span, without storing a window). ``patience``: stop after this many iterations
    without a new variance minimum. ``min_iterations``: minima before this iteration are
    ignored (guards against minima that come too early). ``output``: what to return at the
    minimum: ``candidate`` (the running average of outputs, or the raw output when
    averaging is off), ``raw`` (the network output) or ``window`` (the mean of the window).
    """

    variant: str = "wmv"
    window: int = 100
    patience: int = 1000
    min_iterations: int = 0
    alpha: float | None = None
    output: str = "candidate"

    def validate(self) -> "StopSettings":
        if self.variant not in STOP_VARIANTS:
            raise ValueError(f"unknown stopping variant {self.variant!r}; choose one of "
                             f"{', '.join(STOP_VARIANTS)}")
        if self.output not in STOP_OUTPUTS:
            raise ValueError(f"unknown stopping output {self.output!r}; choose one of "
                             f"{', '.join(STOP_OUTPUTS)}")
        if self.window < 2:
            raise ValueError(f"stopping window must be at least 2, got {self.window}")
        if self.patience < 1:
            raise ValueError(f"stopping patience must be at least 1, got {self.patience}")
        if self.min_iterations < 0:
            raise ValueError(f"min_iterations must be >= 0, got {self.min_iterations}")
        if self.alpha is not None and not 0 < self.alpha < 1:
            raise ValueError(f"stopping alpha must be in (0, 1), got {self.alpha}")
        return self

    @property
    def weight(self) -> float:
        """The EMV weight of a new output."""
        return 2 / (self.window + 1) if self.alpha is None else self.alpha


class FixedStop:
    """Run the full iteration count; return the last candidate."""

    needs_ground_truth = False

    def __init__(self, n_problems: int):
        self.n = n_problems
        self._best: torch.Tensor | None = None
        self._iteration = 0

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None, loss: torch.Tensor | None = None) -> torch.Tensor:
        self._best, self._iteration = candidate, iteration
        return torch.zeros(self.n, dtype=torch.bool, device=candidate.device)

    def result(self) -> tuple[torch.Tensor, list[int]]:
        return self._best, [self._iteration] * self.n


class _KeepBest:
    """Per problem, a copy of the output chosen at its best iteration so far."""

    def __init__(self, n_problems: int):
        self.best: torch.Tensor | None = None
        self.iterations = torch.zeros(n_problems, dtype=torch.long)

    def update(self, iteration: int, chosen: torch.Tensor, better: torch.Tensor) -> None:
        """Keep ``chosen`` (G, ...) and ``iteration`` for the problems ``better`` (G bools on
        ``chosen``'s device), on the device (no boolean indexing: its size needs a read)."""
        chosen = chosen.detach()
        if self.best is None:
            self.best = chosen.clone()
            self.iterations = self.iterations.to(chosen.device)
        else:
            self.best = torch.where(per_row(better, chosen), chosen, self.best)
        self.iterations = torch.where(better, iteration, self.iterations)


class OracleStop:
    """Return, per problem, the candidate with the best PSNR against the ground truth.

    For evaluation only: it needs the answer. Runs the full iteration count.
    """

    needs_ground_truth = True

    def __init__(self, n_problems: int):
        self.n = n_problems
        self._keep = _KeepBest(n_problems)
        self.best_psnr = torch.full((n_problems,), -float("inf"))

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None, loss: torch.Tensor | None = None) -> torch.Tensor:
        if psnr is None:
            raise ValueError("the 'oracle' stopping rule needs a ground truth")
        psnr = psnr.detach()
        self.best_psnr = self.best_psnr.to(psnr.device)
        better = psnr > self.best_psnr
        self._keep.update(iteration, candidate, better)
        self.best_psnr = torch.maximum(self.best_psnr, psnr)
        return torch.zeros(self.n, dtype=torch.bool, device=psnr.device)

    def result(self) -> tuple[torch.Tensor, list[int]]:
        return self._keep.best, self._keep.iterations.tolist()


class _WindowVariance:
    """Variance of the last W outputs per problem, updated in O(pixels) per iteration.

    Keeps a ring buffer of the outputs and running sums of their deviations from a
    reference image; every W iterations the sums are rebuilt from the buffer around the
    current window mean, which bounds rounding drift and keeps the deviations small
    (accurate in float32 on any device). Amortised cost per iteration: O(pixels).
    """

    def __init__(self, window: int):
        self.w = window
        self.count = 0
        self.buf: torch.Tensor | None = None

    def _rebuild(self) -> None:
        self.ref = self.buf.mean(0)
        dev = self.buf - self.ref
        self.s1, self.s2 = dev.sum(0), (dev * dev).sum(0)

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        """Add an output (G, C, H, W); return the window variance (G,) once the window is full."""
        x = x.detach().float()
        if self.buf is None:
            self.buf = x.new_zeros((self.w, *x.shape))
            self.ref = x.clone()
            self.s1, self.s2 = torch.zeros_like(x), torch.zeros_like(x)
        slot = self.count % self.w
        d = x - self.ref
        if self.count >= self.w:
            old = self.buf[slot] - self.ref
            self.s1 += d - old
            self.s2 += d * d - old * old
        else:
            self.s1 += d
            self.s2 += d * d
        self.buf[slot] = x
        self.count += 1
        if self.count % self.w == 0:
            self._rebuild()
        if self.count < self.w:
            return None
        m = self.s1 / self.w
        return (self.s2 / self.w - m * m).clamp_min(0).flatten(1).mean(1)

    def mean(self) -> torch.Tensor:
        return self.ref + self.s1 / self.w


class _MovingVariance:
    """Exponential moving mean and variance per pixel; O(pixels) memory and time."""

    def __init__(self, alpha: float, warmup: int):
        self.a, self.warmup = alpha, warmup
        self.count = 0
        self.m: torch.Tensor | None = None

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        x = x.detach().float()
        self.count += 1
        if self.m is None:
            self.m, self.v = x.clone(), torch.zeros_like(x)
        else:
            d = x - self.m
            self.m += self.a * d
            self.v = (1 - self.a) * (self.v + self.a * d * d)
        if self.count < self.warmup:
            return None
        return self.v.flatten(1).mean(1)

    def mean(self) -> torch.Tensor:
        return self.m


class VarianceStop:
    """ES-WMV / ES-EMV: stop P iterations after the last minimum of the output variance.

    ``observe`` returns a done flag per problem; a done problem keeps its output and
    detected iteration whatever later iterations bring. Until the window is full (or before
    ``min_iterations``) no minimum is taken; a fit that ends before any minimum returns
    its last output.
    """

    needs_ground_truth = False

    def __init__(self, n_problems: int, settings: StopSettings | None = None):
        self.settings = s = (settings or StopSettings()).validate()
        self.n = n_problems
        self.tracker = (_WindowVariance(s.window) if s.variant == "wmv"
                        else _MovingVariance(s.weight, s.window))
        self._keep = _KeepBest(n_problems)
        self.best_variance = torch.full((n_problems,), float("inf"))
        self.done = torch.zeros(n_problems, dtype=torch.bool)
        self.stopped_at = torch.zeros(n_problems, dtype=torch.long)  # 0 = not stopped yet
        self._history: list[tuple[int, torch.Tensor]] = []  # (iteration, variance (G,)) on the device
        self._last: tuple[int, torch.Tensor] | None = None

    @property
    def variance(self) -> list[list[float]]:
        """The variance history: [iteration, variance of each problem] per iteration seen."""
        if not self._history:
            return []
        values = torch.stack([v for _, v in self._history]).tolist()
        return [[it, *row] for (it, _), row in zip(self._history, values)]

    def _place(self, device: torch.device) -> None:
        """The rule's per-problem state on the outputs' device (once)."""
        if self.done.device != device:
            self.done, self.stopped_at = self.done.to(device), self.stopped_at.to(device)
            self.best_variance = self.best_variance.to(device)

    def _chosen(self, output: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        kind = self.settings.output
        if kind == "raw":
            return output
        if kind == "window":
            return self.tracker.mean()
        return candidate

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None, loss: torch.Tensor | None = None) -> torch.Tensor:
        self._place(output.device)
        var = self.tracker.push(output)
        if var is None or iteration < self.settings.min_iterations:
            self._last = (iteration, self._chosen(output, candidate))
            return self.done.clone()
        self._history.append((iteration, var))
        active = ~self.done
        better = active & (var < self.best_variance)
        self._keep.update(iteration, self._chosen(output, candidate), better)
        self.best_variance = torch.where(better, var, self.best_variance)
        stop = active & (iteration - self._keep.iterations >= self.settings.patience)
        self.stopped_at = torch.where(stop, iteration, self.stopped_at)
        self.done = self.done | stop
        return self.done.clone()

    def result(self) -> tuple[torch.Tensor, list[int]]:
        if self._keep.best is None:
            if self._last is None:
                return None, [0] * self.n
            return self._last[1], [self._last[0]] * self.n
        return self._keep.best, self._keep.iterations.tolist()


class GatedVarianceStop(VarianceStop):
    """ES-EMV whose minimum search starts, per problem, only once ``gate`` (a data-fit rule such
    as the discrepancy stop) has fired: before the fit explains the data down to the noise
    level, a variance minimum is a lull in a fit still learning the image, not the onset of
    noise fitting. A problem whose gate never fires returns its last chosen output."""

    name = "variance after discrepancy"

    def __init__(self, n_problems: int, settings: StopSettings, gate):
        super().__init__(n_problems, settings)
        self.gate = gate
        self._latest: tuple[int, torch.Tensor] | None = None

    def observe(self, iteration, output, candidate, psnr, loss=None):
        ready = self.gate.observe(iteration, output, candidate, psnr, loss)
        self._place(output.device)
        waiting = ~ready & ~self.done
        self.done = self.done | waiting  # the parent's search skips problems marked done
        super().observe(iteration, output, candidate, psnr, loss)
        self.done = self.done & ~waiting
        self._latest = (iteration, self._chosen(output, candidate))
        return self.done.clone()

    def result(self):
        out, its = super().result()
        missing = torch.isinf(self.best_variance)
        if out is None or self._latest is None or not bool(missing.any()):
            return out, its
        out = out.clone()
        out[missing.to(out.device)] = self._latest[1].detach()[missing.to(out.device)]
        return out, [self._latest[0] if m else i for m, i in zip(missing.tolist(), its)]


def wide_dtype(device: torch.device) -> torch.dtype:
    """The dtype rules accumulate losses in: float64, float32 on Apple MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _smooth(previous, value, span: int):
    """One step of the exponential moving average with span ``span`` (``previous`` None: start)."""
    return value if previous is None else previous + 2 / (span + 1) * (value - previous)


def smoothed_loss(curve, span: int = 25):
    """The exponential moving average (span ``span``) of a loss curve (iterations, G), per row."""
    import numpy as np
    out, previous = np.empty_like(np.asarray(curve, dtype=np.float64)), None
    for t, row in enumerate(np.asarray(curve, dtype=np.float64)):
        out[t] = previous = _smooth(previous, row, span)
    return out


class DataFitStop:
    """Stop each problem once its data fit is as good as a reference fit's: the rule of
    warm-started slices.

    A slice warm-started from the weights fitted to its neighbour stops when its loss
    (smoothed over ``span`` iterations) falls to ``target``, the neighbour's smoothed loss at
    the iteration its own rule chose (the slices of a stack share the noise level, so the
    same data fit means the same balance of signal and noise); it returns the candidate of
    that iteration. A problem that never gets there runs to the iteration limit.
    """

    needs_ground_truth = False

    def __init__(self, n_problems: int, target, span: int = 25):
        target = torch.as_tensor(target, dtype=torch.float64)  # one loss, or one per problem
        if not bool((target > 0).all()):
            raise ValueError(f"the data-fit target must be a positive loss, got {target.tolist()}")
        self.n, self.target, self.span = n_problems, target, span
        self._keep = _KeepBest(n_problems)
        self.smoothed: torch.Tensor | None = None
        self.done = torch.zeros(n_problems, dtype=torch.bool)
        self._last: tuple[int, torch.Tensor] | None = None

    def observe(self, iteration: int, output: torch.Tensor, candidate: torch.Tensor,
                psnr: torch.Tensor | None, loss: torch.Tensor | None = None) -> torch.Tensor:
        if loss is None:
            raise ValueError("the data-fit rule needs the loss of every iteration")
        loss = loss.detach().to(wide_dtype(loss.device))
        if self.done.device != loss.device:
            self.done, self.target = self.done.to(loss.device), self.target.to(loss)
        self.smoothed = _smooth(self.smoothed, loss, self.span)
        self._last = (iteration, candidate)
        reached = ~self.done & (self.smoothed <= self.target)
        self._keep.update(iteration, candidate, reached)
        self.done = self.done | reached
        return self.done.clone()

    def result(self) -> tuple[torch.Tensor, list[int]]:
        if self._last is None:
            return None, [0] * self.n
        last_it, last = self._last
        if self._keep.best is None:
            return last, [last_it] * self.n
        out = torch.where(per_row(self.done, last), self._keep.best, last.detach())
        its = torch.where(self.done, self._keep.iterations, torch.full_like(self._keep.iterations, last_it))
        return out, its.tolist()


def make_stop_rule(name: str, n_problems: int, settings: StopSettings | None = None):
    """A fresh rule by name; ``settings`` configure ``auto``."""
    if name == "fixed":
        return FixedStop(n_problems)
    if name == "auto":
        return VarianceStop(n_problems, settings)
    if name == "oracle":
        return OracleStop(n_problems)
    raise ValueError(f"unknown stopping rule {name!r}; choose one of {', '.join(STOP_RULES)}")
