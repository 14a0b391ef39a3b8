"""The options side panel: model, class, temperature, seed, candidates, hole-aware
completion, speed."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QWidget,
)

OPEN_MODEL = "Open model…"
HOLE_AWARE_CHOICES = ("Auto", "On", "Off")  # Auto: on when known pixels follow a hole
MAX_SPEED = 1000  # pixels per second at the slow end of "instant"


def row_of(*widgets: QWidget) -> QWidget:
    """Widgets side by side, as one row of a form: the panel then fits the window's
    default height beside the other panels."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return row


class OptionsPanel(QWidget):
    """Every completion setting in one form. Emits `changed` on any edit and
    `model_requested(str)` when another model is chosen (a bundled name or OPEN_MODEL)."""

    changed = Signal()
    model_requested = Signal(str)

    def __init__(self, model_names: list[str], parent=None):
        super().__init__(parent)
        form = QFormLayout(self)
        self.model_box = QComboBox()
        self.model_box.addItems(model_names + [OPEN_MODEL])
        self.model_box.setToolTip("The PixelCNN that completes the drawing")
        self.model_box.activated.connect(self._model_activated)
        form.addRow("Model", self.model_box)

        self.class_box = QComboBox()
        self._offer_classes(0)
        self.class_box.setToolTip(
            "The class a completion is conditioned on. Auto reads it from the drawing (see "
            "Looks like): the most likely class for one completion, one drawn per candidate "
            "for several. Any: no class. Or one class for every completion")
        form.addRow("Class", self.class_box)

        self.temperature_box = QDoubleSpinBox()
        self.temperature_box.setRange(0.0, 3.0)
        self.temperature_box.setSingleStep(0.05)
        self.temperature_box.setValue(1.0)
        self.temperature_box.setToolTip("0 takes the most likely value; above 1 is wilder")
        form.addRow("Temperature", self.temperature_box)

        self.fixed_seed_box = QCheckBox("Fixed")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setEnabled(False)
        self.fixed_seed_box.toggled.connect(self.seed_box.setEnabled)
        form.addRow("Seed", row_of(self.fixed_seed_box, self.seed_box))

        self.candidates_box = QSpinBox()
        self.candidates_box.setRange(1, 9)
        self.candidates_box.setToolTip("Sample several completions side by side")
        form.addRow("Candidates", self.candidates_box)

        self.hole_aware_box = QComboBox()
        self.hole_aware_box.addItems(HOLE_AWARE_CHOICES)
        self.hole_aware_box.setToolTip(
            "Sample several completions and keep the one that fits the whole picture, "
            "including known pixels below and right of a hole. Auto: whenever there are any")
        form.addRow("Hole-aware", self.hole_aware_box)
        self.rerank_box = QSpinBox()
        self.rerank_box.setRange(2, 32)
        self.rerank_box.setValue(16)
        self.rerank_box.setToolTip("How many completions hole-aware completion compares")
        self.rerank_method_box = QComboBox()
        # Resample first, the default: it completed more recognisable digits than the best
        # in every class mode measured (pixelcnn-studio holes; docs/how-it-works.md).
        self.rerank_method_box.addItem("resample", "resample")
        self.rerank_method_box.addItem("keep the best", "best")
        self.rerank_method_box.setToolTip(
            "Best: the most likely whole picture. Resample: draw one in proportion to how "
            "well it explains the pixels after the hole (a sample of the true posterior)")
        form.addRow("  of", row_of(self.rerank_box, self.rerank_method_box))

        self.speed_slider = QSlider(Qt.Orientation.Horizontal)
        self.speed_slider.setRange(0, 100)  # logarithmic: 1 .. 1000 px/s, 100 = instant
        self.speed_slider.setValue(100)
        self.speed_label = QLabel()
        # As wide as its widest text, so the slider does not move as the text changes.
        self.speed_label.setMinimumWidth(self.speed_label.fontMetrics().horizontalAdvance(
            "1000 px/s") + 4)
        self.speed_slider.valueChanged.connect(self._show_speed)
        form.addRow("Speed", row_of(self.speed_slider, self.speed_label))

        self.sampler_box = QComboBox()
        self.sampler_box.addItems(["fast", "reference"])
        self.sampler_box.setToolTip("The reference sampler re-runs the whole network per pixel")
        form.addRow("Sampler", self.sampler_box)

        self.pen_box = QSpinBox()
        self.pen_box.setToolTip("Pen intensity (grayscale models)")
        form.addRow("Pen level", self.pen_box)

        for signal in (self.class_box.currentIndexChanged, self.temperature_box.valueChanged,
                       self.fixed_seed_box.toggled, self.seed_box.valueChanged,
                       self.candidates_box.valueChanged, self.speed_slider.valueChanged,
                       self.hole_aware_box.currentIndexChanged, self.rerank_box.valueChanged,
                       self.rerank_method_box.currentIndexChanged,
                       self.sampler_box.currentIndexChanged, self.pen_box.valueChanged):
            signal.connect(self.changed)
        self._show_speed()

    def set_model(self, name: str, num_classes: int, levels: int) -> None:
        """Show `name` as the current model and offer its classes and levels."""
        if self.model_box.findText(name) < 0:
            self.model_box.insertItem(self.model_box.count() - 1, name)
        self.model_box.setCurrentText(name)
        self.class_box.blockSignals(True)
        self._offer_classes(num_classes)
        self.class_box.blockSignals(False)
        self.pen_box.setRange(1, levels - 1)
        self.pen_box.setValue(levels - 1)
        self.pen_box.setEnabled(levels > 2)

    def _offer_classes(self, num_classes: int) -> None:
        """Auto (the default), Any and each class; only Any for a model without classes."""
        self.class_box.clear()
        if num_classes:
            self.class_box.addItem("Auto", "auto")
        self.class_box.addItem("Any", None)
        for label in range(num_classes):
            self.class_box.addItem(str(label), label)
        self.class_box.setEnabled(num_classes > 0)

    @Slot(int)
    def _model_activated(self, index: int) -> None:
        self.model_requested.emit(self.model_box.itemText(index))

    @property
    def class_label(self) -> int | str | None:
        """A class, "auto" (see model.posterior) or None (no class)."""
        return self.class_box.currentData()

    @property
    def temperature(self) -> float:
        return self.temperature_box.value()

    @property
    def seed(self) -> int | None:
        return self.seed_box.value() if self.fixed_seed_box.isChecked() else None

    @property
    def candidates(self) -> int:
        return self.candidates_box.value()

    def rerank_for(self, known) -> tuple[int, str] | None:
        """(N, method) when hole-aware completion applies to this known-pixel mask; Auto
        turns it on only when a known pixel follows the first unknown one in raster order."""
        choice = self.hole_aware_box.currentText()
        if choice == "Off":
            return None
        if choice == "Auto":
            from model.rerank import reranking_matters

            if not reranking_matters(known):
                return None
        return self.rerank_box.value(), self.rerank_method_box.currentData()

    @property
    def pixels_per_second(self) -> float:
        """0 means as fast as the sampler goes."""
        value = self.speed_slider.value()
        return 0.0 if value >= 100 else round(10 ** (3 * value / 99), 1)

    def set_pixels_per_second(self, speed: float) -> None:
        value = 100 if speed <= 0 else round(99 * math.log10(max(1.0, speed)) / 3)
        self.speed_slider.setValue(min(99, value) if speed > 0 else 100)

    @property
    def sampler(self) -> str:
        return self.sampler_box.currentText()

    @property
    def pen_level(self) -> int:
        return self.pen_box.value()

    @Slot()
    def _show_speed(self) -> None:
        speed = self.pixels_per_second
        # Whole pixels a second from 10 up: "533.7 px/s" claims a precision it has not.
        shown = f"{speed:.0f}" if speed >= 10 else f"{speed:g}"
        self.speed_label.setText("instant" if speed == 0 else f"{shown} px/s")

    def state(self) -> dict:
        """What QSettings keeps between runs."""
        return {"temperature": self.temperature, "fixed_seed": self.fixed_seed_box.isChecked(),
                "seed": self.seed_box.value(), "candidates": self.candidates,
                "speed": self.speed_slider.value(), "sampler": self.sampler,
                "hole_aware": self.hole_aware_box.currentText(),
                "rerank": self.rerank_box.value(),
                "rerank_method": self.rerank_method_box.currentData()}

    def restore_state(self, state: dict) -> None:
        try:
            self.temperature_box.setValue(float(state.get("temperature", 1.0)))
            self.fixed_seed_box.setChecked(str(state.get("fixed_seed")).lower() == "true")
            self.seed_box.setValue(int(state.get("seed", 0)))
            self.candidates_box.setValue(int(state.get("candidates", 1)))
            self.speed_slider.setValue(int(state.get("speed", 100)))
            self.sampler_box.setCurrentText(str(state.get("sampler", "fast")))
            self.hole_aware_box.setCurrentText(str(state.get("hole_aware", "Auto")))
            self.rerank_box.setValue(int(state.get("rerank", 16)))
            method = self.rerank_method_box.findData(str(state.get("rerank_method",
                                                                   "resample")))
            self.rerank_method_box.setCurrentIndex(max(0, method))
        except (TypeError, ValueError):
            pass  # settings from another version: keep the defaults
