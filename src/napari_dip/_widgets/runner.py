"""The jobs of the widgets: one registry per viewer runs them, one at a time, in plain threads.

A job's thread never touches Qt or napari: it fits into a private buffer and puts the api's
events into a queue. A timer on the main thread drains the queue and does everything visible:
it adds the result layer at the first preview (until then the input stays in view) and writes
layer data, moves the progress bar and the curve of the dock that follows the job, and ends the
job (metadata, notifications). The registry outlives the docks: a dock opened again follows the
job of its task, and a second job waits in a queue until the first ends. Closing the viewer
stops every job and waits for its thread.

A job's state is one of ``STATES``. Torch is imported inside the job, never when this module is
imported.
"""
from __future__ import annotations

import queue
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np
from psygnal import Signal
from qtpy.QtCore import QObject

from ..arrays import Layout, as_slices, layout_of
from .cost import Pace, batch_of, clock
from .curve import Curves
from .layers import Region, result_geometry, unique_name

# events(out, cancel) -> generator of api.SliceProgress / api.SliceDone returning (output, report)
EventsFactory = Callable[[np.ndarray, Callable[[], bool]], Generator[Any, None, tuple]]

STATES = ("queued", "running", "stopping", "done", "stopped", "failed")
ACTIVE = ("queued", "running", "stopping")
FIRST_PREVIEW_SECONDS = 2.0   # the first preview replaces the input's view this early
POLL_MS = 100                 # how often the main thread takes the job's events
JOIN_SECONDS = 60.0           # how long closing the viewer waits for a job's current iteration
CARRIED_METADATA = ("nifti",)  # input layer metadata a result carries (NIfTI affine, header: saving)


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
    summary: Callable[[dict], tuple[str, bool]] | None = None  # report -> (text, is a warning)
    keep: tuple[np.ndarray, np.ndarray] | None = None  # (where, values) in the output kept as given
    preview_seconds: float = 5.0  # after the first preview; 0: the result appears at the end only
    layout: Layout = field(init=False)

    def __post_init__(self):
        self.layout = layout_of(self.image, self.channel_axis)  # raises for too-small images


class JobRun:
    """A job in the registry: its state, result layer, progress, curves and outcome."""

    changed = Signal()    # on the main thread, whenever something a dock shows changed
    finished = Signal()   # on the main thread, once, when the job has ended

    def __init__(self, viewer, job: Job):
        self._viewer, self.job = weakref.ref(viewer), job
        self.state = "queued"
        self.layer = None
        self.curves = Curves()
        self.value, self.text = 0, "queued"
        self.summary = ("", False)
        self.done: list[int] = []
        self.report: dict | None = None
        self._cancel = threading.Event()
        self._events: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._slice = None
        self._started = 0.0
        self._layer_deleted = False
        self._pace = Pace()
        self._layer_kwargs = self._result_kwargs()
        self._buffer = initial_result(job)
        self._buffer_slices = as_slices(self._buffer, Layout(self._buffer.shape, job.layout.channel_axis))

    @property
    def viewer(self):
        return self._viewer()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    # -- control (main thread) -------------------------------------------------------------
    def start(self) -> None:
        self.state, self._started = "running", time.perf_counter()
        self.value, self.text = 0, "starting..."
        self._thread = threading.Thread(target=self._work, name=f"napari-dip {self.job.title}", daemon=True)
        self._thread.start()
        self.changed.emit()

    def stop(self) -> None:
        """Ask the job to end at its next iteration; what is done stays, marked partial."""
        self._cancel.set()
        if self.state == "queued":
            self.state, self.text = "stopped", "stopped before it started"
            self.changed.emit()
            self.finished.emit()
        elif self.state == "running":
            self.state, self.text = "stopping", self.text + " · stopping..."
            self.changed.emit()

    def join(self, timeout: float) -> bool:
        """Wait for the job's thread (after :meth:`stop`); True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- the job's thread: no Qt, no napari ---------------------------------------------------
    def _work(self) -> None:
        put = self._events.put
        try:
            gen = self.job.events(self._buffer, self._cancel.is_set)
            last = None  # when the last preview was taken
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    put(("returned", stop.value))
                    break
                progress = getattr(event, "progress", None)
                if progress is not None and progress.preview is not None:
                    now = time.perf_counter()
                    every = self.job.preview_seconds
                    due = every > 0 and now - (self._started if last is None else last) >= (
                        min(FIRST_PREVIEW_SECONDS, every) if last is None else every)
                    if due and np.isfinite(progress.preview).all():
                        self._write_preview(event)
                        last = now
                    else:
                        progress.preview = None  # not shown: drop it here
                put(("event", event))
        except BaseException as err:  # shown on the main thread
            put(("error", err))
        finally:
            put(("end", None))

    def _write_preview(self, event) -> None:
        # One image per slice of the event, already in the input's units (api.SliceProgress).
        for index, image in zip(dict.fromkeys(batch_of(event)), event.progress.preview):
            self._buffer_slices[index] = image

    # -- the main thread ----------------------------------------------------------------------
    def poll(self) -> bool:
        """Handle the events the thread has queued; True once the job has ended."""
        while True:
            try:
                kind, value = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "event":
                self._on_event(value)
            elif kind == "returned":
                self._on_returned(value)
            elif kind == "error":
                self._on_error(value)
            else:  # "end"
                if self.state in ("running", "stopping"):  # ended without a result
                    self.state = "stopped"
                self.changed.emit()
                self.finished.emit()
                return True
        self.changed.emit()
        return False

    def _result_kwargs(self) -> dict:
        src, job = self.job.source, self.job
        kwargs = dict(rgb=bool(src.rgb), contrast_limits=tuple(src.contrast_limits), blending=src.blending,
                      **result_geometry(src, job.region.offset, job.factor))
        if not src.rgb:
            kwargs["colormap"] = src.colormap
        return kwargs

    def _metadata(self, **extra) -> dict:
        job = self.job
        carried = {k: job.source.metadata[k] for k in CARRIED_METADATA if k in job.source.metadata}
        return {"task": job.title, "source": job.source.name, "region": job.region.describe(),
                "settings": dict(job.settings), **carried, **extra}

    def _show(self, slices=None) -> None:
        """Copy the buffer (or some of its slices) into the result layer; add the layer if needed."""
        if self.layer is not None and self.layer not in self.viewer.layers:
            self._layer_deleted = True
        if self._layer_deleted:
            return  # the user removed it during the run: the result comes back as a new layer
        layout = Layout(self._buffer.shape, self.job.layout.channel_axis)
        keep = self.job.keep
        if self.layer is None:
            data = self._buffer if keep is None else np.where(keep[0], keep[1], self._buffer)
            name = unique_name(self.viewer, f"{self.job.source.name} [{self.job.title}]")
            self.layer = self.viewer.add_image(np.array(_displayed(data, self.job.source)), name=name,
                                               **self._layer_kwargs)
            self.layer.metadata.update(self._metadata(status="running", partial=True))
            return
        out = as_slices(self.layer.data, layout)
        where, values = (None, None) if keep is None else (as_slices(keep[0], layout), as_slices(keep[1], layout))
        for i in (range(len(out)) if slices is None else slices):
            x = self._buffer_slices[i] if keep is None else np.where(where[i], values[i], self._buffer_slices[i])
            out[i] = _displayed(x, self.job.source)
        self.layer.refresh()

    def _on_event(self, event) -> None:
        if not hasattr(event, "progress"):  # SliceDone: the api wrote the slice into the buffer
            self.done.append(event.slice)
            self._show([event.slice])
            return
        p = event.progress
        batch = batch_of(event)
        key = (event.slice, event.tiles)
        if key != self._slice:
            if event.tiles and self._slice is not None:  # the tiles before are blended in: show them
                self._show(sorted(set(batch) | {self._slice[0]}))
            self._slice = key
            unit = "tile" if event.tiles else "slice"  # tiled runs count tiles
            what = (f"{unit} {event.position + 1}" if len(batch) == 1
                    else f"{unit}s {event.position + 1}-{event.position + len(batch)}")
            self.curves.reset(f"{what}/{event.count}" if event.count > 1 else "")
        for name in ("loss", "psnr", "ssim"):
            values = getattr(p, name)
            if values is not None:  # the mean over the slices fitted together
                self.curves.add(name, p.iteration, float(np.mean(values)))
        done = event.position * p.total + len(batch) * p.iteration
        todo = event.count * p.total
        now = time.perf_counter()
        eta = event.eta  # a tiled run's (the api counts its tiles); else from the latest iterations
        if eta is None:
            eta = self._pace.remaining(now, done, todo)
        if eta is None:  # the first two iterations: from the time so far (it includes the start-up)
            eta = (now - self._started) / done * (todo - done) if done else 0.0
        self.value = int(1000 * done / todo)
        self.text = (f"{self.curves.title or 'slice 1/1'} · iteration {p.iteration}/{p.total}"
                     f" · ETA {clock(eta)}" + (" · stopping..." if self.state == "stopping" else ""))
        if p.preview is not None:
            self._show(batch)

    def _on_returned(self, result) -> None:
        from napari.utils.notifications import show_error, show_warning

        output, report = result
        self.report = report
        partial = bool(report.get("partial"))
        bad = [i for i in self.done if not np.isfinite(self._buffer_slices[i]).all()]
        if bad:
            self._fail(ValueError(
                f"the result of {self.job.source.name!r} has NaN or infinite values (slices {bad}): the fit "
                "diverged and no layer was added; lower the learning rate (Advanced) or rescale the layer"))
            return
        if partial:  # slices never reached show zeros, not the input they started as
            reached = set(self.done)
            for i in range(len(self._buffer_slices)):
                if i not in reached:
                    self._buffer_slices[i] = 0
        records = report.get("slices", [])
        metrics = {"slices": [{k: r[k] for k in ("slice", "psnr", "ssim", "psnr_input", "ssim_input",
                                                 "final_loss", "iterations") if k in r} for r in records]}
        for key in ("psnr", "ssim", "psnr_input", "ssim_input"):
            values = [r[key] for r in records if key in r]
            if values:
                metrics[key] = float(np.mean(values))
        lost = self._layer_deleted or (self.layer is not None and self.layer not in self.viewer.layers)
        if lost:
            self.layer, self._layer_deleted = None, False
        self._show()
        self.layer.metadata.update(self._metadata(
            status="stopped" if report.get("cancelled") else "done", partial=partial,
            seconds=report.get("seconds"), metrics=metrics, slices_done=list(self.done), report=report))
        if lost:
            show_warning(f"{self.job.title}: the result layer was deleted during the run; the result is "
                         f"added again as {self.layer.name!r}")
        if self.job.source not in self.viewer.layers:
            show_warning(f"{self.job.title}: the input layer {self.job.source.name!r} was removed during the "
                         f"run; the result is in {self.layer.name!r}")
        try:
            if self.job.finish is not None:
                self.job.finish(output, report, self.layer)
        except Exception as err:  # a task's extra layers failed: the result itself stays
            show_error(f"{self.job.title}: adding the extra layers failed: {err}")
        self.layer.refresh()
        if self.job.summary is not None:
            self.summary = self.job.summary(report)
        text = f"{'stopped, partial result kept' if partial else 'done'} in {report.get('seconds', 0):.1f} s"
        if "psnr" in metrics:
            before = f"{metrics['psnr_input']:.2f} -> " if "psnr_input" in metrics else ""
            text += f" · PSNR {before}{metrics['psnr']:.2f} dB"
        self.state = "stopped" if report.get("cancelled") else "done"
        self.value, self.text = (self.value if partial else 1000), text

    def _on_error(self, err: BaseException) -> None:
        message = str(err)
        if isinstance(err, MemoryError) or "out of memory" in message.lower():
            message += " (try a smaller image or range, the 'fast' preset, or the CPU)"
        self._fail(err, message)

    def _fail(self, err: BaseException, message: str | None = None) -> None:
        from napari.utils.notifications import show_error

        message = message or str(err)
        self.state, self.text = "failed", f"failed: {message}"
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)  # no wrong or half-made result stays in view
        self.layer = None
        show_error(f"{self.job.title} failed: {message}")



class JobRegistry:
    """The jobs of one viewer: at most one runs, the others wait in order."""

    def __init__(self, viewer):
        from qtpy.QtCore import QTimer

        self._viewer = weakref.ref(viewer)
        self.runs: list[JobRun] = []
        self._timer = QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._key = id(viewer)
        self._closing = _CloseWatcher(self)
        self._watched = None
        from qtpy.QtWidgets import QApplication
        QApplication.instance().aboutToQuit.connect(self.shutdown)

    @property
    def viewer(self):
        return self._viewer()

    @property
    def current(self) -> JobRun | None:
        return next((r for r in self.runs if r.state in ("running", "stopping")), None)

    def latest(self, key: str) -> JobRun | None:
        """The newest job started from the dock ``key`` (the widget's title)."""
        return next((r for r in reversed(self.runs) if r.job.title == key), None)

    def submit(self, job: Job) -> JobRun:
        run = JobRun(self.viewer, job)
        run.finished.connect(self._next)
        ahead = [r for r in self.runs if r.active]
        self.runs = [r for r in self.runs if r.active or r.job.title != job.title] + [run]
        if ahead:
            first = ahead[0]
            run.text = (f"queued: starts when {first.job.title} on {first.job.source.name!r} ends"
                        + (f" (and {len(ahead) - 1} more)" if len(ahead) > 1 else ""))
            from napari.utils.notifications import show_info
            show_info(f"{job.title} on {job.source.name!r} is queued: one job runs at a time, and it "
                      f"starts when {first.job.title} on {first.job.source.name!r} ends")
        else:
            self._start(run)
        return run

    def _start(self, run: JobRun) -> None:
        run.start()
        self._timer.start()

    def _poll(self) -> None:
        run = self.current
        if run is None:
            self._timer.stop()
            return
        run.poll()

    def _next(self) -> None:
        if self.current is not None:
            return
        queued = next((r for r in self.runs if r.state == "queued"), None)
        if queued is not None:
            self._start(queued)
        else:
            self._timer.stop()

    def shutdown(self) -> bool:
        """Stop every job and wait for its thread (the viewer is closing); True when all ended."""
        self._timer.stop()
        for run in self.runs:
            if run.active:
                run.finished.disconnect(self._next)
                run.stop()
        ended = all(run.join(JOIN_SECONDS) for run in self.runs)
        _REGISTRIES.pop(self._key, None)
        return ended

    def watch(self, widget) -> None:
        """Stop the jobs when the window holding ``widget`` (the viewer's main window) closes."""
        top = widget
        while top.parentWidget() is not None:
            top = top.parentWidget()
        if self._watched is None or self._watched() is not top:
            top.installEventFilter(self._closing)
            self._watched = weakref.ref(top)


class _CloseWatcher(QObject):
    """Event filter on the viewer's main window: its Close event stops the registry's jobs."""

    def __init__(self, registry: JobRegistry):
        super().__init__()
        self._registry = weakref.ref(registry)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt name)
        from qtpy.QtCore import QEvent, QTimer

        if event.type() == QEvent.Type.Close:
            if not event.spontaneous():  # viewer.close(): it closes for sure
                self._shutdown()
            else:  # the user's click: napari may still ask and stay open
                ref = weakref.ref(obj)
                QTimer.singleShot(0, lambda: self._shutdown() if ref() is None or not _visible(ref()) else None)
        return False

    def _shutdown(self) -> None:
        registry = self._registry()
        if registry is not None:
            registry.shutdown()


def _visible(widget) -> bool:
    try:
        return widget.isVisible()
    except RuntimeError:  # deleted
        return False


_REGISTRIES: dict[int, tuple[weakref.ref, JobRegistry]] = {}


def registry_for(viewer) -> JobRegistry:
    """The viewer's job registry (made on first use).

    napari hands every dock its own proxy of the viewer; the registry belongs to the viewer
    behind them (``__wrapped__``), so that all docks of one viewer share it.
    """
    viewer = getattr(viewer, "__wrapped__", viewer)
    for key, (ref, _) in list(_REGISTRIES.items()):
        if ref() is None:
            del _REGISTRIES[key]
    ref, registry = _REGISTRIES.get(id(viewer), (None, None))
    if ref is None or ref() is not viewer:
        registry = JobRegistry(viewer)
        _REGISTRIES[id(viewer)] = (weakref.ref(viewer), registry)
    return registry


class JobRunner:
    """What one dock shows of its jobs: it starts them and follows the newest (also after reopening)."""

    def __init__(self, viewer, *, key: str, progress, curve, on_state: Callable[[str], None],
                 summary=None):
        self.viewer, self.key = viewer, key
        self.progress = progress      # a QProgressBar
        self.curve = curve            # a CurvePlot
        self.summary = summary        # a QLabel for the job's summary (or None)
        self.on_state = on_state      # called with the followed job's state ("idle" without one)
        self.registry = registry_for(viewer)
        self.run: JobRun | None = None
        latest = self.registry.latest(key)
        if latest is not None:
            self._follow(latest)

    @property
    def state(self) -> str:
        return "idle" if self.run is None else self.run.state

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.active

    @property
    def layer(self):
        return None if self.run is None else self.run.layer

    def start(self, job: Job) -> JobRun:
        if self.running:
            raise RuntimeError("this dock's job is still running; stop it first")
        self.registry.watch(self.progress)
        run = self.registry.submit(job)
        self._follow(run)
        return run

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()

    def close(self) -> None:
        """The dock is going away: stop following (the job goes on; reopening the dock shows it)."""
        if self.run is not None:
            self.run.changed.disconnect(self._update)
            self.run = None

    def _follow(self, run: JobRun) -> None:
        if self.run is not None:
            self.run.changed.disconnect(self._update)
        self.run = run
        self.curve.show_curves(run.curves)
        run.changed.connect(self._update)
        self._update()

    def _update(self) -> None:
        run = self.run
        try:
            self.progress.setRange(0, 1000)
            self.progress.setValue(run.value)
            self.progress.setFormat(run.text)
            self.curve.update()
            if self.summary is not None:
                text, warn = run.summary
                self.summary.setText(text)
                self.summary.setVisible(bool(text))
                self.summary.setStyleSheet("color: #f0a030;" if warn else "")
            self.on_state(run.state)
        except RuntimeError:  # the dock's Qt widgets are gone
            self.close()


def _displayed(data: np.ndarray, source) -> np.ndarray:
    """napari shows float RGB as 0..1: RGB results of integer images get the input's dtype."""
    dtype = np.dtype(source.dtype)
    if source.rgb and dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(np.float32, copy=False)


def initial_result(job: Job) -> np.ndarray:
    """The result as it starts: the input as float32 (nearest-upsampled for super-resolution), so
    that slices the job has not reached yet show the input."""
    image = np.asarray(job.image, dtype=np.float32)
    if job.factor == 1:
        return image.copy()
    axes = job.layout.channel_last_view[-2:]
    for axis in axes:
        image = np.repeat(image, job.factor, axis=axis)
    return np.ascontiguousarray(image)


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
