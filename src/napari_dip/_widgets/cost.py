"""What a widget's job costs: a few timed iterations before Run, and the time left while it runs.

Both come from measured time per iteration, never from a guess: :func:`start_estimate` runs
the job's own events for :data:`ESTIMATE_ITERATIONS` iterations (the same data, device,
network and batch as Run), and :class:`Pace` turns the latest iterations of a running job
into the time left. Prices are at the iteration cap; the automatic stop usually ends sooner.
"""
from __future__ import annotations

import collections
from typing import Callable

import numpy as np

#: Iterations timed by the estimate, after the first (which includes the start-up).
ESTIMATE_ITERATIONS = 3
#: Progress events the running rate is taken over (older ones include the start-up).
PACE_EVENTS = 20


def batch_of(event) -> tuple[int, ...]:
    """The slices an api progress event covers (several when slices are fitted in one batch)."""
    return tuple(getattr(event, "slices", ())) or (event.slice,)


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def price(seconds_per_iteration: float, event, stop: str) -> tuple[float, str]:
    """(seconds, one line) for the whole job at its iteration cap, from the time per
    iteration of its first fit and that fit's last progress event.

    Slices fitted together cost about as much as one after the other on a CPU, so the job is
    priced per slice-iteration: every slice of the job to the cap."""
    p = event.progress
    together = len(batch_of(event))
    slices = getattr(event, "count", 1)
    seconds = seconds_per_iteration / together * slices * p.total
    fits = f"{slices} slices" if slices > 1 else "1 slice"
    line = (f"measured {seconds_per_iteration:.2f} s per iteration"
            f"{f' ({together} slices at once)' if together > 1 else ''}: at most {clock(seconds)} "
            f"for {fits} x {p.total} iterations")
    if stop == "auto":
        line += " (the automatic stop usually ends sooner)"
    return seconds, line


class Pace:
    """The time left of a running job from the rate of its latest iterations (the rate over
    the whole run would include the start-up and overestimate)."""

    def __init__(self, events: int = PACE_EVENTS):
        self._seen: collections.deque[tuple[float, int]] = collections.deque(maxlen=events)

    def remaining(self, now: float, done: int, todo: int) -> float | None:
        """Seconds left when ``done`` of ``todo`` slice-iterations are done at ``now``
        (``None`` until two iterations have been seen)."""
        self._seen.append((now, done))
        (t0, d0), (t1, d1) = self._seen[0], self._seen[-1]
        if d1 <= d0 or t1 <= t0:
            return None
        return (todo - done) * (t1 - t0) / (d1 - d0)


def start_estimate(make_events: Callable, out: np.ndarray, *, stop: str,
                   on_done: Callable[[float, str], None], on_error: Callable[[BaseException], None]):
    """Time :data:`ESTIMATE_ITERATIONS` iterations of ``make_events(out, cancel)`` in a
    worker thread; ``on_done(seconds, line)`` or ``on_error(err)`` run on the main thread."""
    from superqt.utils import create_worker

    from ..estimate import probe_events

    worker = create_worker(probe_events, lambda cancel: make_events(out, cancel), ESTIMATE_ITERATIONS,
                           _start_thread=False)
    worker.returned.connect(lambda measured: on_done(*price(measured[0], measured[1], stop)))
    worker.errored.connect(on_error)
    worker.start()
    return worker
