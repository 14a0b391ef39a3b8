"""The main window: canvas in the centre, tools, options, candidates and insight around it.

MainWindow composes its parts, each a mixin in a module of its own: the actions, menus,
tool bars and docks (window_layout.py), the picture's files and unsaved work
(file_actions.py), switching the model (model_switching.py, loading it in the background
with model_loading.py) and completing the drawing with its candidates
(completion_control.py). What stays here: the window's state, the settings, the history and
the views that follow the drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QTimer, Signal, Slot
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMainWindow, QMessageBox

from model.registry import DEFAULT_MODEL, bundled_models, sample_picture

from .canvas import PixelCanvas
from .completion_control import CompletionControl
from .completion_runner import CompletionRunner
from .document import Snapshot
from .file_actions import FileActions
from .gallery import CandidateGallery
from .insight import DistributionView
from .looks_like import ClassPosteriorView, ClassPosteriorWatcher
from .model_loading import ModelLoader, warm_up_reports
from .model_switching import ModelSwitching
from .options import OptionsPanel
from .tool_keys import ToolKeys
from .window_layout import WindowLayout

DEFAULT_SIZE = (1100, 760)


class MainWindow(FileActions, ModelSwitching, CompletionControl, WindowLayout, QMainWindow):
    completion_ended = Signal()  # a completion this window started finished, stopped or failed

    def __init__(self, model_name: str | None = None, *, load_in_background: bool = False):
        """`load_in_background`: lay out the canvas from the model's card at once and load
        its weights in a thread, so the window shows before PyTorch is imported (the app's
        start-up); Complete pressed meanwhile runs when they arrive."""
        super().__init__()
        self.setWindowTitle("PixelCNN Studio")
        self.setAcceptDrops(True)
        self.undo_stack = QUndoStack(self)
        # The picture's file (file_actions.py): none for an untitled or pasted picture.
        self.file_path: Path | None = None
        # Unsaved work the undo history cannot show: a picture kept, converted, across a
        # change of model (which starts a new history).
        self.modified_outside_history = False
        # Completions and what they leave (completion_control.py).
        self.runner = CompletionRunner(self)
        self.before_completion = None  # the drawing before Complete: what undo returns to
        self.completion_start = None  # the drawing the completion samples from
        self.last_completion: tuple[Snapshot, Snapshot] | None = None  # (start, result)
        # The last completion's candidates (N, C, H, W), their known pixels and classes.
        self.candidate_images: np.ndarray | None = None
        self.candidate_known: np.ndarray | None = None
        self.candidate_classes: tuple = ()
        self.candidate_put: int | None = None  # the one last put on the canvas
        self.run_candidates = 1  # of the current or last completion
        self.chosen_candidate: int | None = None  # the one hole-aware completion kept
        self.complete_when_loaded = False
        self._keep_run_display = False  # True while a completion's own undo step is pushed
        # The model in use, its weights loaded in the background (model_switching.py).
        self.model = None
        self.model_name = ""
        self.loader = ModelLoader(self)
        self.device_choice = None  # where completions run, and why (device_choice.py)

        self.canvas = PixelCanvas(self.undo_stack)
        self.setCentralWidget(self.canvas)
        self.options = OptionsPanel(bundled_models())
        self.gallery = CandidateGallery()
        self.insight = DistributionView()
        self.looks_like = ClassPosteriorView()
        self.posterior_watcher = ClassPosteriorWatcher(self)
        self._create_actions()
        self._create_menus()
        self._create_tool_bars()
        self._create_docks()
        self._create_status_bar()
        self._connect()
        self.tool_keys = ToolKeys(self, [*self.tool_actions.values(), self.complete_action],
                                  {"[": self.canvas.smaller_brush, "]": self.canvas.larger_brush})
        self._read_settings()
        self.open_model(model_name or self._initial_model(), background=load_in_background)

    def _connect(self) -> None:
        self.options.model_requested.connect(self._model_chosen)
        self.options.changed.connect(self._options_changed)
        self.canvas.edited.connect(self._drawing_edited)
        self.gallery.adopted.connect(self.adopt_candidate)
        self.posterior_watcher.computed.connect(self.looks_like.show_posterior)
        self.runner.progressed.connect(self._samples_arrived)
        self.runner.fell_back.connect(self._completion_fell_back)
        self.runner.finished.connect(self._completion_finished)
        self.runner.failed.connect(self._completion_failed)
        self.loader.loaded.connect(self._model_loaded)
        self.loader.failed.connect(self._model_failed)
        warm_up_reports().device_chosen.connect(self._device_chosen)
        self.undo_stack.cleanChanged.connect(self._update_title)

    # -- settings -----------------------------------------------------------------------

    def _read_settings(self) -> None:
        settings = QSettings()
        geometry = settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(*DEFAULT_SIZE)
        state = settings.value("window/state")
        if state is not None:
            self.restoreState(state)
        self.options.restore_state(settings.value("options", {}) or {})
        self.grid_action.setChecked(str(settings.value("view/grid", "false")) == "true")
        self.canvas.set_grid_visible(self.grid_action.isChecked())

    def _write_settings(self) -> None:
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.setValue("options", self.options.state())
        settings.setValue("view/grid", self.grid_action.isChecked())
        settings.setValue("model", self.model_name)

    def _initial_model(self) -> str:
        remembered = QSettings().value("model")
        names = bundled_models()
        if remembered in names:
            return remembered
        return DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else "")

    @Slot()
    def _options_changed(self) -> None:
        self.canvas.set_pen_value(self.options.pen_level)
        if self.runner.is_running():
            self.runner.set_speed(self.options.pixels_per_second)
        self.refresh_surprise()

    # -- history ------------------------------------------------------------------------

    @Slot()
    def undo(self) -> None:
        """Undo the last step; during a completion, stop it first and undo what it drew."""
        stopping = self.runner.is_running()
        if self._stop_completion_now():
            self.undo_stack.undo()
            if stopping:  # not "what was sampled is kept": it was, then undone
                self.statusBar().showMessage("Completion stopped and undone; Redo brings "
                                             "back what it had drawn.", 6000)

    @Slot()
    def redo(self) -> None:
        if self._stop_completion_now():
            self.undo_stack.redo()

    def _edit(self, change) -> None:
        """A whole-picture edit from a menu or key: during a completion, once it has
        stopped (the picture must not change under the sampler)."""
        if self._stop_completion_now():
            change()

    # -- insight ------------------------------------------------------------------------

    @Slot()
    def refresh_surprise(self) -> None:
        if not self.surprise_action.isChecked() or self.model is None:
            self.canvas.set_heatmap(None)
            return
        from model.distributions import pixel_surprise

        drawing = self.canvas.drawing
        label = self.options.class_label
        # Under Auto, the surprise of the model without a class: p(x), not p(x | a guess).
        nats = pixel_surprise(self.model, drawing.values, None if label == "auto" else label)
        # A uniform guess over the levels costs ln(levels) nats a channel: the middle of the
        # scale, so that what the model finds likelier than chance is on the cool half.
        chance = drawing.channels * float(np.log(drawing.levels))
        self.canvas.set_heatmap(np.where(drawing.known, nats, np.nan), scale=2 * chance,
                                marks=((chance, "chance"),))

    @Slot()
    def show_how_it_works(self) -> None:
        # Imported on first use: nothing in it is needed to start the app.
        from .how_it_works import HowItWorksWindow

        window = self.findChild(HowItWorksWindow)
        if window is None:
            window = HowItWorksWindow(self.canvas, lambda: self.model, self)
        window.show()
        window.raise_()
        window.activateWindow()

    @Slot()
    def _drawing_edited(self) -> None:
        """Every change of the picture (a stroke, an edit, an undo or redo, a new picture)."""
        self._update_title()
        self.refresh_surprise()
        self._watch_posterior()
        self._sync_candidates()
        if not self._keep_run_display:
            self._reset_run_display()

    def _watch_posterior(self) -> None:
        """Have the "Looks like" panel follow the drawing: the pixels Complete would keep."""
        drawing = self.canvas.drawing
        self.posterior_watcher.request(drawing.values, drawing.known_for_completion())

    @Slot()
    def about(self) -> None:
        QMessageBox.about(self, "About PixelCNN Studio",
                          "Draw half a picture and watch a PixelCNN complete it, one pixel "
                          "at a time in raster order.")

    def closeEvent(self, event) -> None:
        # A completion in flight is not unsaved work of its own; what it sampled is kept
        # (and saved, if the user says so) once it has stopped.
        modified = self.is_modified()
        self._stop_completion_now()
        if modified and not self._settle_unsaved_work("closing"):
            event.ignore()
            return
        self.complete_when_loaded = False  # weights arriving now must not start a run
        self.runner.shutdown()
        self.loader.wait()  # a model half loaded must not outlive the window's objects
        self._write_settings()
        event.accept()


def start_demo(window: MainWindow, sample: Path | None = None,
               pixels_per_second: float = 150) -> None:
    """Load a sample picture (by default the model's: a digit, or a smiley for a colour
    model), erase its bottom half and complete it in slow motion."""
    window.open_image(sample or sample_picture(window.canvas.drawing.channels))
    drawing = window.canvas.drawing
    before = drawing.snapshot()
    drawing.known[drawing.known.shape[0] // 2:] = False
    drawing.values[:, drawing.known.shape[0] // 2:] = 0
    window.canvas.push_edit(before, "Erase bottom half")
    window.options.set_pixels_per_second(pixels_per_second)
    QTimer.singleShot(300, window.complete)
