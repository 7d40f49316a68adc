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
