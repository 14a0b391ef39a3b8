"""The "Looks like" panel: p(class | what is drawn) for a class-conditional model, kept up to
date while the person draws.

The posterior (model.posterior) costs one batched forward pass, tens to hundreds of
milliseconds: far too long for the GUI thread between two mouse moves. So a watcher
computes it in a background thread, at most one at a time, on a copy of the drawing taken
a short moment after it changed: during a stroke it follows the drawing a few times a
second, after the stroke it catches up with the last change, and a stroke never waits for
it.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QWidget

SETTLE_MS = 120  # how long after a change the drawing is read (a stroke changes it often)
# Once the panel is in use and its posterior is slow, a thread of its own compiles a faster
# one (model.posterior_scorer), for seconds of CPU; the tests switch that off, but for theirs.
PREPARE_FAST_SCORER = True
SCORER_THREAD = "posterior compile"


def prepare_quietly(scorer) -> None:
    try:
        scorer.prepare()
    except Exception as error:  # noqa: BLE001 - the panel keeps the exact posterior
        print(f"Preparing the fast class posterior failed: {error}", file=sys.stderr)


class ClassPosteriorWatcher(QObject):
    """Computes p(class | known pixels) of the latest drawing it was given, off the GUI
    thread; `computed(posterior)` arrives in the GUI thread (None: no model with classes)."""

    computed = Signal(object)
    _finished = Signal(object, int)  # from the worker thread: posterior, generation

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._model = None
        self._generation = 0  # a new model makes results still on their way stale
        self._request: tuple[np.ndarray, np.ndarray] | None = None
        self._worker: threading.Thread | None = None
        self.posterior: np.ndarray | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(self._start)
        self._finished.connect(self._take_result)

    def set_model(self, model) -> None:
        """Watch for `model` from now on (a model without classes: nothing to compute)."""
        self._model = model if model is not None and model.config.num_classes else None
        self._generation += 1
        self._request = None
        self.posterior = None
        self.computed.emit(None)

    @property
    def active(self) -> bool:
        return self._model is not None

    def request(self, values: np.ndarray, known: np.ndarray) -> None:
        """Compute the posterior of this drawing soon; returns at once."""
        if self._model is None:
            return
        self._request = (np.array(values, copy=True), np.array(known, copy=True))
        if not self._timer.isActive() and not self.busy:
            self._timer.start()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def wait(self, seconds: float = 10.0) -> None:
        """Let a computation under way end (its result still arrives as a queued signal)."""
        if self._worker is not None:
            self._worker.join(seconds)

    @Slot()
    def _start(self) -> None:
        if self._request is None or self._model is None or self.busy:
            return
        (values, known), self._request = self._request, None
        self._worker = threading.Thread(
            target=self._compute, args=(self._model, values, known, self._generation),
            name="class posterior", daemon=True)
        self._worker.start()

    def _compute(self, model, values, known, generation: int) -> None:
        from model.posterior_scorer import WORTH_COMPILING_S, scorer_for

        scorer = scorer_for(model)
        started = time.perf_counter()
        try:
            posterior = scorer(values, known)
        except Exception:  # noqa: BLE001 - a panel shows nothing rather than fail the app
            posterior = None
        slow = time.perf_counter() - started > WORTH_COMPILING_S
        if posterior is not None and slow and PREPARE_FAST_SCORER and scorer.claim():
            threading.Thread(target=prepare_quietly, args=(scorer,), name=SCORER_THREAD,
                             daemon=True).start()
        self._finished.emit(posterior, generation)

    @Slot(object, int)
    def _take_result(self, posterior, generation: int) -> None:
        self._worker = None
        if generation == self._generation:
            self.posterior = posterior
            self.computed.emit(posterior)
        if self._request is not None:  # the drawing changed meanwhile
            self._timer.start()


class ClassPosteriorView(QWidget):
    """A bar per class, p(class | what is drawn), the most likely one highlighted."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.posterior: np.ndarray | None = None
        self.setMinimumSize(180, 90)
        self.setToolTip("How likely each class is, given the pixels drawn above the part "
                        "that a completion fills. Class Auto completes with these.")

    @property
    def caption(self) -> str:
        if self.posterior is None:
            return "Looks like: …"
        if self.undecided:
            return "Looks like: anything yet"
        best = int(np.argmax(self.posterior))
        return f"Looks like {best} ({self.posterior[best]:.0%})"

    @property
    def undecided(self) -> bool:
        """Every class equally likely: nothing is drawn above the part to complete."""
        return self.posterior is not None and bool(np.ptp(self.posterior) < 1e-9)

    def show_posterior(self, posterior) -> None:
        self.posterior = None if posterior is None else np.asarray(posterior, float)
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        metrics = painter.fontMetrics()
        line = metrics.height() + 4
        painter.setPen(self.palette().text().color())
        painter.drawText(QRectF(4, 2, self.width() - 8, line), Qt.AlignmentFlag.AlignLeft,
                         self.caption)
        if self.posterior is None:
            return
        area = QRectF(4, line + 2, self.width() - 8, self.height() - 2 * line - 6)
        width = area.width() / len(self.posterior)
        best = None if self.undecided else int(np.argmax(self.posterior))
        for label, p in enumerate(self.posterior):
            height = area.height() * float(p)
            left = area.left() + label * width
            painter.fillRect(QRectF(left, area.bottom() - height, max(1.0, width - 2), height),
                             QColor("#d95f02" if label == best else "#7570b3"))
            painter.drawText(QRectF(left, area.bottom() + 2, width, line),
                             Qt.AlignmentFlag.AlignHCenter, str(label))
