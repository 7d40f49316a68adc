"""What a run will cost, measured before it starts: a few iterations of its real first fit.

:func:`estimate_cost` runs ``probe`` iterations of the fits :func:`~napari_dip.api.run` would
start with (the first slice or batch, and a full later batch if its size differs), on the
real data, device and precision, and prices the whole run from their time per iteration.
The automatic rule stops at an unknown iteration, so the price is an upper bound: every fit
to the iteration cap. :meth:`CostEstimate.eta` turns the live progress into a remaining time
from the measured rate, which holds from the first iteration on (a rate taken from elapsed
time includes the start-up of the first fit and overestimates).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from .arrays import check_image, layout_of
from .core.task import TaskConfig


@dataclass(frozen=True)
class CostEstimate:
    """Measured seconds per iteration and the run's price at its iteration cap.

    ``fits``: (slices in the fit, seconds per iteration) for each fit of the run, in order.
    ``iterations``: the cap per fit. ``seconds``: all fits to the cap (an upper bound when
    the rule stops early). ``probe_seconds``: what the measurement took.
    """

    fits: tuple[tuple[int, float], ...]
    iterations: int
    seconds: float
    probe_seconds: float

    @property
    def seconds_per_iteration(self) -> float:
        """The first fit's seconds per iteration."""
        return self.fits[0][1]

    def eta(self, fit_index: int, iteration: int) -> float:
        """Seconds left at ``iteration`` of fit ``fit_index`` (0-based), every fit to the cap."""
        rest = max(0, self.iterations - iteration) * self.fits[fit_index][1]
        return rest + sum(self.iterations * s for _, s in self.fits[fit_index + 1:])

    def summary(self) -> str:
        """One line: the time per iteration and the total at the cap."""
        return (f"{self.seconds_per_iteration:.2f} s per iteration, at most "
                f"{self.seconds / 60:.1f} min for {len(self.fits)} fit(s) of {self.iterations} iterations")


def estimate_cost(config: TaskConfig, image, *, channel_axis: int | None = None, mask=None,
                  inputs: dict | None = None, device: str = "auto", slices: Sequence[int] | None = None,
                  batch_size: int | None = None, warm_start: bool | None = None,
                  probe: int = 3) -> CostEstimate:
    """Measure ``probe`` iterations (after one warm-up iteration) of the run that
    :func:`~napari_dip.api.run` would do with these arguments and price it at the cap.

    The image, mask and ``inputs`` (the task's operator inputs, as for ``run``) are only
    read. Takes about ``probe + 1`` iterations of the first fit, plus as many of a full later
    batch when it holds more slices than the first.
    """
    from .api import _groups, auto_batch_size, run
    from .arrays import padded_size
    from .core.fit import resolve_device

    if not isinstance(probe, int) or probe < 1:
        raise ValueError(f"probe must be a whole number of iterations >= 1, got {probe!r}")
    arr = check_image(image, "image", channel_axis)
    layout = layout_of(arr, channel_axis)
    todo = list(range(layout.n_slices)) if slices is None else [int(i) for i in slices]
    warm = config.warm_start if warm_start is None else bool(warm_start)
    dev = resolve_device(device)
    factor = config.factor
    ph, pw = padded_size(config.network, *layout.spatial, factor)
    size = batch_size or auto_batch_size(config, layout.channels, (ph * factor, pw * factor), dev)
    size = max(1, min(size, len(todo)))
    fits = [batch for _, batch in _groups(todo, size, warm)]
    measured: dict[int, float] = {}
    start = time.perf_counter()
    for batch in {len(b): b for b in fits}.values():  # one probe per batch size
        scratch = np.zeros(layout.output_shape(factor), np.float32)  # the probe writes here
        measured[len(batch)] = probe_events(lambda cancel: run(
            config, arr, channel_axis=channel_axis, mask=mask, inputs=inputs, device=device, slices=batch,
            batch_size=len(batch), warm_start=False, out=scratch, cancel=cancel), probe)[0]
    priced = tuple((len(b), measured[len(b)]) for b in fits)
    total = config.fit.iterations * sum(s for _, s in priced)
    return CostEstimate(priced, config.fit.iterations, total, time.perf_counter() - start)


def probe_events(make_events: Callable[[Callable[[], bool]], Iterator], probe: int = 3) -> tuple[float, object]:
    """(seconds per iteration, the last progress event) of the run ``make_events(cancel)``
    starts, timed over its iterations 2 to ``probe + 1``; it is cancelled after those.

    Works for any generator of the api's events (``run``, or a widget job's events)."""
    start = time.perf_counter()
    stamps: list[float] = []
    last = None
    for event in make_events(lambda: len(stamps) > probe):
        if hasattr(event, "progress"):
            stamps.append(time.perf_counter())
            last = event
    if not stamps:
        raise RuntimeError("the run ended before its first iteration: nothing to time")
    if len(stamps) == 1:  # a one-iteration run: its start-up included, an upper bound
        return stamps[0] - start, last
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1), last
