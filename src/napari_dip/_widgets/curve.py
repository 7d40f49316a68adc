"""A small live plot of the loss (log scale) and, with a ground truth, PSNR and SSIM."""
from __future__ import annotations

import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

# name -> (colour, label format, log scale)
SERIES = {
    "loss": ("#f0a030", "loss {:.2e}", True),
    "psnr": ("#40c0f0", "PSNR {:.2f} dB", False),
    "ssim": ("#90e070", "SSIM {:.3f}", False),
}


class Curves:
    """The points of one fit's curves (kept by the job, so that a reopened dock shows them)."""

    def __init__(self):
        self.title = ""
        self.points: dict[str, list[tuple[int, float]]] = {name: [] for name in SERIES}

    def reset(self, title: str = "") -> None:
        self.title = title
        for pts in self.points.values():
            pts.clear()

    def add(self, name: str, iteration: int, value: float) -> None:
        if value is not None and math.isfinite(value):
            self.points[name].append((iteration, value))

    def last(self, name: str) -> float | None:
        pts = self.points[name]
        return pts[-1][1] if pts else None


class CurvePlot(QWidget):
    """Draws a :class:`Curves` against the iteration; each curve is scaled to its own range."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.data = Curves()

    def show_curves(self, data: Curves) -> None:
        """Draw ``data`` from now on (the curves of the job this dock follows)."""
        self.data = data
        self.update()

    @property
    def title(self) -> str:
        return self.data.title

    @property
    def points(self) -> dict[str, list[tuple[int, float]]]:
        return self.data.points

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = self.rect().adjusted(4, 18, -4, -4)
        p.fillRect(self.rect(), QColor("#262930"))
        p.setPen(QPen(QColor("#5a626c")))
        p.drawRect(rect)
        xmax = max((pts[-1][0] for pts in self.points.values() if pts), default=1)
        labels = [(self.title, "#d0d4d8")] if self.title else []
        for name, (colour, fmt, log) in SERIES.items():
            pts = self.points[name]
            if not pts:
                continue
            labels.append((fmt.format(pts[-1][1]), colour))
            ys = [math.log10(max(v, 1e-12)) if log else v for _, v in pts]
            lo, hi = min(ys), max(ys)
            span = hi - lo or 1.0
            path = QPainterPath()
            for k, ((it, _), y) in enumerate(zip(pts, ys)):
                pt = QPointF(rect.left() + rect.width() * it / max(xmax, 1),
                             rect.bottom() - rect.height() * (y - lo) / span)
                path.moveTo(pt) if k == 0 else path.lineTo(pt)
            p.setPen(QPen(QColor(colour), 1.5))
            p.drawPath(path)
        x = 6
        for text, colour in labels:
            p.setPen(QPen(QColor(colour)))
            p.drawText(x, 2, self.width() - x, 16, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, text)
            x += p.fontMetrics().horizontalAdvance(text) + 12
        p.end()


class NoisePlot(QWidget):
    """The estimated noise model of a slice: the local (mean, variance) pairs it was fitted to
    (dots) and the fitted curve ``variance = a * mean + b`` (a line), in the image's units."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.points: list[tuple[float, float]] = []
        self.curve: list[tuple[float, float]] = []  # the fitted model at points along the mean axis
        self.title = ""
        self.setVisible(False)

    def show_model(self, record: dict | None) -> None:
        """Plot a report record's ``noise`` and ``noise_levels``; hide the plot without them."""
        levels = (record or {}).get("noise_levels")
        if not levels or not levels.get("means"):
            self.points, self.curve, self.title = [], [], ""
            self.setVisible(False)
            return
        m = record["noise"]
        self.points = list(zip(map(float, levels["means"]), map(float, levels["variances"])))
        lo, hi = min(x for x, _ in self.points), max(x for x, _ in self.points)
        xs = [lo + (hi - lo) * k / 40 for k in range(41)]
        self.curve = list(zip(xs, _model_variance(m, xs)))
        sign = "-" if m["b"] < 0 else "+"
        self.title = (f"var = {m['a']:.3g} mean {sign} {abs(m['b']):.3g}" if m["a"] > 0
                      else f"var = {m['b']:.3g} ({m['kind']})")
        self.setVisible(True)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = self.rect().adjusted(4, 18, -4, -16)
        p.fillRect(self.rect(), QColor("#262930"))
        p.setPen(QPen(QColor("#5a626c")))
        p.drawRect(rect)
        if self.points:
            xs = [x for x, _ in self.points + self.curve]
            vs = [v for _, v in self.points + self.curve] + [0.0]
            x0, x1 = min(xs), max(xs)
            v0, v1 = min(vs), max(vs)
            sx, sv = (x1 - x0) or 1.0, (v1 - v0) or 1.0

            area = rect.adjusted(4, 4, -4, -4)  # dots at the extremes stay inside the frame

            def at(x, v):
                return QPointF(area.left() + area.width() * (x - x0) / sx,
                               area.bottom() - area.height() * (v - v0) / sv)

            path = QPainterPath()
            for k, (x, v) in enumerate(self.curve):
                path.moveTo(at(x, v)) if k == 0 else path.lineTo(at(x, v))
            p.setPen(QPen(QColor(NOISE_COLOURS["curve"]), 1.5))
            p.drawPath(path)
            p.setPen(QPen(QColor(NOISE_COLOURS["points"]), 1))
            p.setBrush(QColor(NOISE_COLOURS["points"]))
            for x, v in self.points:
                p.drawEllipse(at(x, v), 2.5, 2.5)
            p.setPen(QPen(QColor("#a0a4a8")))
            small = Qt.AlignmentFlag.AlignBottom
            p.drawText(rect.left(), rect.bottom() + 1, rect.width(), 14, small | Qt.AlignmentFlag.AlignLeft,
                       f"mean {x0:.3g}")
            p.drawText(rect.left(), rect.bottom() + 1, rect.width(), 14, small | Qt.AlignmentFlag.AlignRight,
                       f"{x1:.3g}")
            # The corners the rising curve leaves free: the variance axis's top (and its bottom).
            p.drawText(rect.left() + 3, rect.top() + 2, rect.width(), 14, Qt.AlignmentFlag.AlignTop,
                       f"var {v1:.3g}")
            p.drawText(rect.left(), rect.bottom() - 15, rect.width() - 3, 14,
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, f"var {v0:.3g}")
        p.setPen(QPen(QColor("#d0d4d8")))
        p.drawText(6, 2, self.width() - 6, 16, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, self.title)
        p.end()


NOISE_COLOURS = {"points": "#40c0f0", "curve": "#f0a030"}


def _model_variance(model: dict, xs: list[float]) -> list[float]:
    """The variance a report's model gives at the means ``xs`` (Rician: of the magnitude)."""
    if model["kind"] == "rician":
        import numpy as np

        from ..core.noise import rician_moments

        sigma = math.sqrt(max(model["b"], 0.0))
        nus = sigma * np.concatenate([[0], np.geomspace(1e-3, 60, 600)])
        mean, var = rician_moments(nus, sigma)
        return [float(v) for v in np.interp(xs, mean, var)]
    return [model["a"] * x + model["b"] for x in xs]
