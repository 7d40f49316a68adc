"""The one job runner every widget uses: a napari thread worker over the api's event generator.

It creates the result layer, moves the progress bar (slice, iteration, ETA), draws previews
into the result layer every N iterations, feeds the curve, stops at the next iteration when
asked (keeping what is done, marked partial), and turns errors into napari notifications.
Torch is imported inside the worker, never when this module is imported.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np

from ..arrays import Intensity, Layout, as_slices, layout_of
from .layers import Region, result_geometry, unique_name

# events(out, cancel) -> generator of api.SliceProgress / api.SliceDone returning (output, report)
EventsFactory = Callable[[np.ndarray, Callable[[], bool]], Generator[Any, None, tuple]]


def available_devices() -> list[tuple[str, str]]:
    """(label, device) pairs: auto, cpu, each CUDA device, and mps when present."""
    import torch

    devices = [("auto", "auto"), ("cpu", "cpu")]
    for i in range(torch.cuda.device_count()):
        devices.append((f"cuda:{i} ({torch.cuda.get_device_name(i)})", f"cuda:{i}"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps (Apple GPU)", "mps"))
    return devices


@dataclass
class Job:
    """One run of a widget: the block to process and how to process it."""

    title: str                   # e.g. "DIP denoise": names the result "<source> [<title>]"
    source: Any                  # the input napari Image layer (never modified)
    image: np.ndarray            # the block of the source to process
    channel_axis: int | None
    region: Region
    events: EventsFactory
    settings: dict
    factor: int = 1
    finish: Callable[[Any, dict, Any], None] | None = None  # (output, report, layer) when done
    layout: Layout = field(init=False)

    def __post_init__(self):
        self.layout = layout_of(self.image, self.channel_axis)  # raises for too-small images


class JobRunner:
    """Runs one job at a time for a widget and reports through its progress bar and curve."""

    def __init__(self, viewer, *, progress, curve, on_state: Callable[[bool], None]):
        self.viewer = viewer
        self.progress = progress      # a QProgressBar
        self.curve = curve            # a CurvePlot
        self.on_state = on_state      # called with True when a job starts, False when it ends
        self.worker = None
        self.layer = None
        self._cancel = threading.Event()

    @property
    def running(self) -> bool:
        return self.worker is not None

    def stop(self) -> None:
        """Ask the job to end at its next iteration; what is done stays, marked partial."""
        self._cancel.set()
        if self.running:
            self.progress.setFormat(self.progress.format() + " · stopping...")

    def start(self, job: Job):
        """Add the result layer and start the worker; return the worker."""
        from napari.qt.threading import create_worker

        if self.running:
            raise RuntimeError("a job is already running; stop it first")
        self.job, self._cancel = job, threading.Event()
        self.layer = self._add_result_layer(job)
        self._out = self.layer.data
        self._out_slices = as_slices(self._out, Layout(self._out.shape, job.layout.channel_axis))
        self._intensity = Intensity.of(job.image)
        self._done: list[int] = []
        self._slice, self._started = None, time.perf_counter()
        self.curve.reset()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("starting...")
        worker = create_worker(_work, job.events, self._out, self._cancel.is_set, self._write_preview,
                               _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.on_state(True)
        worker.start()
        return worker

    # -- result layer ------------------------------------------------------------------
    def _add_result_layer(self, job: Job):
        src = job.source
        shape = job.layout.output_shape(job.factor)
        kwargs = dict(name=unique_name(self.viewer, f"{src.name} [{job.title}]"), rgb=bool(src.rgb),
                      contrast_limits=tuple(src.contrast_limits), blending=src.blending,
                      **result_geometry(src, job.region.offset, job.factor))
        if not src.rgb:
            kwargs["colormap"] = src.colormap
        layer = self.viewer.add_image(np.zeros(shape, np.float32), **kwargs)
        layer.metadata.update(self._metadata(status="running", partial=True))
        return layer

    def _metadata(self, **extra) -> dict:
        job = self.job
        return {"task": job.title, "source": job.source.name, "region": job.region.describe(),
                "settings": dict(job.settings), **extra}

    # -- worker signals (main thread) --------------------------------------------------
    def _on_event(self, event) -> None:
        if hasattr(event, "progress"):
            self._on_progress(event)
        else:  # SliceDone: the api wrote the slice into the layer's data
            self._done.append(event.slice)
            self.layer.refresh()

    def _on_progress(self, event) -> None:
        p = event.progress
        batch = _batch(event)
        if event.slice != self._slice:
            self._slice = event.slice
            what = (f"slice {event.position + 1}" if len(batch) == 1
                    else f"slices {event.position + 1}-{event.position + len(batch)}")
            self.curve.reset(f"{what}/{event.count}" if event.count > 1 else "")
        for name in ("loss", "psnr", "ssim"):
            values = getattr(p, name)
            if values is not None:  # the mean over the slices fitted together
                self.curve.add(name, p.iteration, float(np.mean(values)))
        self.curve.update()
        done = event.position * p.total + len(batch) * p.iteration
        todo = event.count * p.total
        elapsed = time.perf_counter() - self._started
        eta = elapsed / done * (todo - done) if done else 0.0
        self.progress.setValue(int(1000 * done / todo))
        self.progress.setFormat(f"{self.curve.title or 'slice 1/1'} · iteration {p.iteration}/{p.total}"
                                f" · ETA {_clock(eta)}")
        if p.preview is not None:  # already written into the layer's data by the worker
            self.layer.refresh()

    def _write_preview(self, event) -> None:
        """Worker thread: write a preview into the result, in order with the api's final write."""
        h, w = self._out_slices.shape[-2:]
        preview = event.progress.preview
        for g, index in enumerate(_batch(event)):
            self._out_slices[index] = self._intensity.from_unit(preview[g, :, :h, :w])

    def _on_returned(self, result) -> None:
        output, report = result
        partial = bool(report.get("partial"))
        records = report.get("slices", [])
        metrics = {"slices": [{k: r[k] for k in ("slice", "psnr", "ssim", "psnr_input", "ssim_input",
                                                 "final_loss", "iterations") if k in r} for r in records]}
        for key in ("psnr", "ssim", "psnr_input", "ssim_input"):
            values = [r[key] for r in records if key in r]
            if values:
                metrics[key] = float(np.mean(values))
        self.layer.metadata.update(self._metadata(
            status="stopped" if report.get("cancelled") else "done", partial=partial,
            seconds=report.get("seconds"), metrics=metrics, slices_done=list(self._done), report=report))
        if self.job.finish is not None:
            self.job.finish(output, report, self.layer)
        self._match_rgb_dtype()
        text = f"{'stopped, partial result kept' if partial else 'done'} in {report.get('seconds', 0):.1f} s"
        if "psnr" in metrics:
            before = f"{metrics['psnr_input']:.2f} -> " if "psnr_input" in metrics else ""
            text += f" · PSNR {before}{metrics['psnr']:.2f} dB"
        self.progress.setValue(self.progress.value() if partial else 1000)
        self.progress.setFormat(text)

    def _match_rgb_dtype(self) -> None:
        """napari shows float RGB as 0..1: give RGB results from integer images the input's dtype."""
        dtype = np.dtype(self.job.source.dtype)
        if self.layer.rgb and dtype.kind in "ui":
            info = np.iinfo(dtype)
            self.layer.data = np.clip(np.rint(self.layer.data), info.min, info.max).astype(dtype)
        else:
            self.layer.refresh()

    def _on_error(self, err: Exception) -> None:
        from napari.utils.notifications import show_error

        message = f"{self.job.title} failed: {err}"
        if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
            message += " (try a smaller image or range, the 'fast' preset, or the CPU)"
        if self._done:
            self.layer.metadata.update(self._metadata(status="failed", partial=True, error=str(err),
                                                      slices_done=list(self._done)))
            self._match_rgb_dtype()
        elif self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)  # nothing finished: drop the empty result
            self.layer = None
        self.progress.setFormat(f"failed: {err}")
        show_error(message)

    def _on_finished(self) -> None:
        self.worker = None
        self.on_state(False)


def callback_events(call: Callable[[Callable[[Any], None]], Any]) -> Generator[Any, None, Any]:
    """Turn ``call(callback)``, a function that reports through a callback, into a generator.

    ``call`` runs in a helper thread; every object it passes to the callback is yielded here,
    and the generator returns what ``call`` returns (or raises what it raised).
    """
    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call(events.put)
        except BaseException as err:  # handed to the generator's consumer below
            outcome["error"] = err
        finally:
            events.put(_END)

    thread = threading.Thread(target=target, name="napari-dip-job", daemon=True)
    thread.start()
    while (event := events.get()) is not _END:
        yield event
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


_END = object()


def _work(events: EventsFactory, out: np.ndarray, cancel: Callable[[], bool], write_preview):
    """The worker's generator: relays the job's events, writing previews on the way."""
    gen = events(out, cancel)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if getattr(getattr(event, "progress", None), "preview", None) is not None:
            write_preview(event)
        yield event


def _batch(event) -> tuple[int, ...]:
    """The slices an api progress event covers (several when slices are fitted in one batch)."""
    return tuple(getattr(event, "slices", ())) or (event.slice,)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
