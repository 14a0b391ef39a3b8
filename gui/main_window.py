"""The main window: canvas in the centre, tools, options, candidates and insight around it."""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

# Only torch-free parts of the model package at import time: the window is shown first and
# PyTorch is loaded with the model's weights (in the background when the app starts).
from model.card import ModelFileError, read_card
from model.registry import DEFAULT_MODEL, bundled_models, resolve_model, sample_picture

from .animation import PaceDialog, sampling_order, write_gif
from .canvas import PixelCanvas
from .document import Drawing, Snapshot, convert_snapshot
from .gallery import CandidateGallery
from .image_io import IMAGE_SUFFIXES, ImageFileError, load_image, save_png
from .insight import DistributionView
from .looks_like import ClassPosteriorView, ClassPosteriorWatcher
from .options import OPEN_MODEL, OptionsPanel
from .palette import ColourPen
from .tool_keys import ToolKeys
from .worker import CompletionRunner

IMAGE_FILTER = f"Images ({' '.join('*' + suffix for suffix in IMAGE_SUFFIXES)})"
DEFAULT_SIZE = (1100, 760)
STOP_WAIT_MS = 5000  # the longest an edit waits for a running completion to stop
STANDARD_BUTTONS = {"Save": QMessageBox.StandardButton.Save,
                    "Discard": QMessageBox.StandardButton.Discard,
                    "Cancel": QMessageBox.StandardButton.Cancel}


class ModelLoader(QObject):
    """Loads a model's weights (importing PyTorch on the way) in a background thread."""

    loaded = Signal(object, str, object)  # model, name, card
    failed = Signal(str)

    def __init__(self, parent: QObject):
        super().__init__(parent)
        # Not named `thread`: that would hide QObject.thread(), the Qt thread this object lives in.
        self._loading: threading.Thread | None = None
        # True from start() until the outcome's signal is handled in the GUI thread (not
        # until the thread ends: its queued signal may still be on its way then).
        self.pending = False
        self.loaded.connect(self._settle)  # connected first, so it runs before the others
        self.failed.connect(self._settle)

    def start(self, path: Path, name: str, card: dict) -> None:
        self.pending = True
        self._loading = threading.Thread(target=self._load, args=(path, name, card),
                                         name="model loader", daemon=True)
        self._loading.start()

    def _load(self, path: Path, name: str, card: dict) -> None:
        try:
            from model.io import load_model

            model = load_model(path)
        except (ModelFileError, OSError) as error:
            self.failed.emit(str(error))
        except Exception as error:  # noqa: BLE001 - anything else is reported, not lost
            self.failed.emit(f"{path}: {error}")
        else:
            self.loaded.emit(model, name, card)

    @Slot()
    def _settle(self, *_) -> None:
        self.pending = False

    def wait(self, seconds: float = 30.0) -> None:
        if self._loading is not None:
            self._loading.join(seconds)


WARM_UP_THREAD = "kernel warm-up"


def wait_for_warm_ups(seconds: float = 30.0) -> None:
    """Let the background kernel warm-ups finish (waiting at most `seconds` in all). Called
    before the process exits: a warm-up cut off at exit inside a kernel (then one of Numba's
    parallel regions) aborted the packaged app ("terminate called without an active
    exception")."""
    deadline = time.monotonic() + seconds
    for thread in threading.enumerate():
        if thread.name == WARM_UP_THREAD:
            thread.join(max(0.0, deadline - time.monotonic()))


def warm_up_quietly(model) -> None:
    from model.fast import warm_up

    try:
        warm_up(model)
    except Exception as error:  # noqa: BLE001 - a completion reports any real problem itself
        print(f"Kernel warm-up failed: {error}", file=sys.stderr)
    freeze_start_up_objects()


_start_up_frozen = False


def freeze_start_up_objects() -> None:
    """Take what the process has made by the time its first model and kernels are ready out
    of the garbage collector's walks, once: PyTorch's, Numba's and Qt's modules and their
    like (about 260,000 objects), which live as long as the process. A full collection walked
    them all, 210 ms with the GIL held (the window and the animation stood still), about
    once in 60 nine-candidate completions, whose samples wait in the animation long enough
    to reach the oldest generation."""
    global _start_up_frozen
    if not _start_up_frozen:
        _start_up_frozen = True
        gc.freeze()


def redo_shortcuts() -> list[QKeySequence]:
    """The platform's Redo keys, and Ctrl+Shift+Z where that is not one of them already
    (on X11 it is: the same key twice is an ambiguous shortcut, and Qt then runs neither)."""
    keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
    extra = QKeySequence("Ctrl+Shift+Z")
    return keys if extra in keys else [*keys, extra]


def scrolling(widget: QWidget) -> QScrollArea:
    """`widget` in a vertical scroll area: with a large font or a short screen it scrolls
    rather than making the window taller than the screen."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


class Picture(NamedTuple):
    """What the canvas is to show with a model: the drawing, whether it holds unsaved work
    that its history cannot show, the file it belongs to, and (for the drawing converted to
    the model's levels) how to convert the history's steps alike; without it the history
    starts afresh."""

    drawing: Drawing
    modified: bool
    file_path: Path | None
    convert: Callable[[Snapshot], Snapshot] | None = None


class MainWindow(QMainWindow):
    def __init__(self, model_name: str | None = None, *, load_in_background: bool = False):
        """`load_in_background`: lay out the canvas from the model's card at once and load
        its weights in a thread, so the window shows before PyTorch is imported (the app's
        start-up); Complete pressed meanwhile runs when they arrive."""
        super().__init__()
        self.setWindowTitle("PixelCNN Studio")
        self.setAcceptDrops(True)
        self.model = None
        self.model_name = ""
        self.file_path: Path | None = None
        # Unsaved work the undo history cannot show: a picture kept, converted, across a
        # change of model (which starts a new history).
        self.modified_outside_history = False
        self.undo_stack = QUndoStack(self)
        self.runner = CompletionRunner(self)
        self.before_completion = None  # the drawing before Complete: what undo returns to
        self.completion_start = None  # the drawing the completion samples from
        self.last_completion: tuple[Snapshot, Snapshot] | None = None  # (start, result)
        # The last completion's candidates (N, C, H, W), their known pixels and classes.
        self.candidate_images: np.ndarray | None = None
        self.candidate_known: np.ndarray | None = None
        self.candidate_classes: tuple = ()
        self.candidate_put: int | None = None  # the one last put on the canvas
        self.completion_finished_callbacks = []
        self.loader = ModelLoader(self)
        self.run_candidates = 1  # of the current or last completion
        self.chosen_candidate: int | None = None  # the one hole-aware completion kept
        self.complete_when_loaded = False
        self._keep_run_display = False  # True while a completion's own undo step is pushed

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

    # -- construction -------------------------------------------------------------------

    def _action(self, text, slot, shortcut=None, tip="", checkable=False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        return action

    def _create_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.new_action = self._action("&New", self.new_drawing, K.New, "Start an empty canvas")
        self.open_action = self._action("&Open…", self.open_image_dialog, K.Open,
                                        "Open an image at the model's size")
        self.save_action = self._action("&Save", self.save, K.Save, "Save the drawing as PNG")
        self.save_as_action = self._action("Save &As…", self.save_as, K.SaveAs,
                                           "Save the drawing under a new name")
        self.export_gif_action = self._action("Export completion as &GIF…", self.export_gif,
                                              None, "Save the last completion as an animation")
        self.open_model_action = self._action("Open &model…", self.open_model_dialog, None,
                                              "Load a .safetensors model with its .json card")
        self.quit_action = self._action("&Quit", self.close, K.Quit, "Leave PixelCNN Studio")
        self._create_history_actions()
        self.paste_action = self._action("&Paste image", self.paste_image, K.Paste,
                                         "Paste an image from the clipboard")
        self.clear_action = self._action("C&lear", lambda: self._edit(self.canvas.clear), None,
                                         "Empty canvas")
        self.invert_action = self._action("&Invert", lambda: self._edit(self.canvas.invert),
                                          "Ctrl+I", "Swap ink and background")
        self.erase_all_action = self._action("Erase &everything",
                                             lambda: self._edit(self.canvas.erase_all), None,
                                             "Mark every pixel unknown")
        self.grid_action = self._action("Show &grid", self.canvas.set_grid_visible, "Ctrl+G",
                                        "Draw the pixel grid", checkable=True)
        self.surprise_action = self._action("&Surprise heatmap", self.refresh_surprise, "Ctrl+H",
                                            "Shade each known pixel by how unlikely the model "
                                            "finds it", checkable=True)
        self.how_it_works_action = self._action("How it &works", self.show_how_it_works, None,
                                                "What the model sees from the pixel under the "
                                                "mouse, its masks and raster order")
        self.complete_action = self._action("&Complete", self.complete, "Space",
                                            "Sample every unknown pixel in raster order")
        self.stop_action = self._action("&Stop", self.stop, "Esc", "Stop the completion")
        self.stop_action.setEnabled(False)
        self.about_action = self._action("&About", self.about, None, "About PixelCNN Studio")
        self.tool_group = QActionGroup(self)
        self.tool_actions = {}
        for name, text, key in (("pen", "&Pen", "P"), ("eraser", "&Eraser", "E"),
                                ("rect_erase", "&Rectangle erase", "R"),
                                ("erase_below", "Erase from this row &down", "D")):
            action = self._action(text, lambda _=False, n=name: self.canvas.set_tool(n), key,
                                  checkable=True)
            self.tool_group.addAction(action)
            self.tool_actions[name] = action
        self.tool_actions["pen"].setChecked(True)
        # Their keys are handled by ToolKeys (by the character typed), so the menu only
        # names them here.
        self.smaller_brush_action = self._action("S&maller brush\t[", self.canvas.smaller_brush,
                                                 None, "Brush size down to 1")
        self.larger_brush_action = self._action("L&arger brush\t]", self.canvas.larger_brush,
                                                None, "Brush size up to 5")

    def _create_history_actions(self) -> None:
        """Undo and Redo that first stop a running completion (what it sampled becoming an
        undo step of its own), so the history never moves under the sampler. The toolbar
        shows them as plain "Undo" and "Redo" (the menu names the step), so its buttons keep
        their width."""
        self.undo_action = self._action("&Undo", self.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("&Redo", self.redo)
        self.redo_action.setShortcuts(redo_shortcuts())
        for action, verb in ((self.undo_action, "Undo"), (self.redo_action, "Redo")):
            action.setIconText(verb)
            action.setToolTip(verb)
        stack = self.undo_stack
        stack.undoTextChanged.connect(lambda text: self._name_step(self.undo_action, "Undo",
                                                                   text))
        stack.redoTextChanged.connect(lambda text: self._name_step(self.redo_action, "Redo",
                                                                   text))
        stack.canUndoChanged.connect(self._sync_history_actions)
        stack.canRedoChanged.connect(self._sync_history_actions)
        self._sync_history_actions()

    @staticmethod
    def _name_step(action: QAction, verb: str, step: str) -> None:
        action.setText(f"&{verb} {step}" if step else f"&{verb}")
        action.setToolTip(f"{verb} {step}" if step else verb)

    @Slot()
    def _sync_history_actions(self) -> None:
        # While a completion runs, Undo stops it and undoes it: there is always a step then.
        running = self.runner.is_running()
        self.undo_action.setEnabled(running or self.undo_stack.canUndo())
        self.redo_action.setEnabled(not running and self.undo_stack.canRedo())

    def _create_menus(self) -> None:
        menus = {
            "&File": [self.new_action, self.open_action, self.save_action, self.save_as_action,
                      self.export_gif_action, None, self.open_model_action, None,
                      self.quit_action],
            "&Edit": [self.undo_action, self.redo_action, None, self.paste_action, None,
                      *self.tool_actions.values(), self.smaller_brush_action,
                      self.larger_brush_action, None, self.clear_action, self.invert_action,
                      self.erase_all_action],
            "&View": [self.grid_action, self.surprise_action, self.how_it_works_action],
            "&Complete": [self.complete_action, self.stop_action],
            "&Help": [self.about_action],
        }
        self.view_menu = None
        for title, actions in menus.items():
            menu = self.menuBar().addMenu(title)
            if title == "&View":
                self.view_menu = menu
            for action in actions:
                if action is None:
                    menu.addSeparator()
                else:
                    menu.addAction(action)

    def _create_tool_bars(self) -> None:
        tools = self.addToolBar("Tools")
        tools.setObjectName("tools")
        for action in self.tool_actions.values():
            tools.addAction(action)
        tools.addSeparator()
        tools.addWidget(QLabel(" Brush "))
        self.brush_box = QSpinBox()
        self.brush_box.setRange(1, 5)
        self.brush_box.setToolTip("Brush size ([ and ])")
        self.brush_box.setValue(self.canvas.brush_size)
        self.brush_box.valueChanged.connect(self.canvas.set_brush_size)
        self.canvas.brush_size_changed.connect(self.brush_box.setValue)
        tools.addWidget(self.brush_box)
        tools.addSeparator()
        tools.addAction(self.undo_action)
        tools.addAction(self.redo_action)
        tools.addSeparator()
        tools.addAction(self.complete_action)
        tools.addAction(self.stop_action)
        # Colour models only (see _show_colour_pen): swatches and a picker for the pen, on a
        # row of their own, so that they never push Complete and Stop off the first one.
        self.addToolBarBreak()
        self.colour_tool_bar = self.addToolBar("Colours")
        self.colour_tool_bar.setObjectName("colours")
        self.colour_pen = ColourPen()
        self.colour_pen.colour_chosen.connect(self.canvas.set_pen_colour)
        # Choosing a colour means drawing with it, whatever tool was active.
        self.colour_pen.colour_chosen.connect(lambda _: self.tool_actions["pen"].trigger())
        self.colour_pen_action = self.colour_tool_bar.addWidget(self.colour_pen)
        self.colour_tool_bar.hide()

    def _create_docks(self) -> None:
        # The right column runs from the toolbar to the status bar; the candidates sit
        # under the canvas only, so neither squeezes the other.
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.docks: dict[str, QDockWidget] = {}
        for title, widget, area in (
            ("Options", self.options, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Candidates", self.gallery, Qt.DockWidgetArea.BottomDockWidgetArea),
            ("Looks like", self.looks_like, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Insight", self.insight, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            self.docks[title] = dock
            dock.setObjectName(title.lower())
            holder = QWidget()
            QVBoxLayout(holder).addWidget(scrolling(widget) if widget is self.options
                                          else widget)
            dock.setWidget(holder)
            self.addDockWidget(area, dock)
            self.view_menu.addAction(dock.toggleViewAction())

    def _create_status_bar(self) -> None:
        self.progress_label = QLabel()
        self.device_label = QLabel()
        self.statusBar().addPermanentWidget(self.progress_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self.statusBar().showMessage("Draw, erase what should be completed, press Space.")

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

    # -- model --------------------------------------------------------------------------

    def open_model(self, name_or_path: str, background: bool = False) -> bool:
        """Switch to a model; False (after a dialog) if it cannot be read, or when the user
        keeps the current one rather than lose unsaved work. In the background, only its
        card is read here and the weights arrive later."""
        if not name_or_path:
            self.statusBar().showMessage("No bundled model found: open one from File.")
            self.complete_action.setEnabled(False)
            self.canvas.set_drawing(Drawing(1, 28, 28, 2))
            return False
        if self.loader.pending or not self._stop_completion_now():
            return False
        name = Path(str(name_or_path)).stem
        try:
            path = resolve_model(name_or_path)
            card = read_card(path)
        except (ModelFileError, OSError) as error:
            self._model_failed(str(error))
            return False
        picture = self._picture_for(card["config"], name)
        if picture is None:
            self._show_current_model_in_options()
            return False
        if not background:
            try:
                from model.io import load_model

                model = load_model(path)
            except (ModelFileError, OSError) as error:
                self._model_failed(str(error))
                return False
        self._lay_out_for(card["config"], name, picture)
        if background:  # Complete stays enabled: pressed meanwhile, it waits for the weights
            self.complete_action.setEnabled(True)
            self.statusBar().showMessage(f"Loading model {name}…")
            self.loader.start(path, name, card)
        else:
            self._model_loaded(model, name, card)
        return True

    def _picture_for(self, cfg, name: str) -> Picture | None:
        """What the canvas shows with a model of `cfg`: the drawing as it is when it fits
        the model; else the drawing converted to the model's levels, history and all, where
        the size allows, or an empty canvas. Unsaved work is never dropped unasked: the user
        keeps it converted or discards it (or saves it, when it cannot be kept). None: the
        user cancelled."""
        old = self.canvas.drawing
        if (old.values.shape == (cfg.channels, cfg.height, cfg.width)
                and old.levels == cfg.levels):
            return Picture(old, self.modified_outside_history, self.file_path)
        empty = Picture(Drawing(cfg.channels, cfg.height, cfg.width, cfg.levels), False, None)
        converted = old.converted(cfg.channels, cfg.height, cfg.width, cfg.levels)
        convert = partial(convert_snapshot, from_levels=old.levels, channels=cfg.channels,
                          levels=cfg.levels)
        if old.is_blank():
            return empty
        kind = f"{cfg.levels} levels" + (" of colour" if cfg.channels == 3 else "")
        if not self.is_modified():
            if converted is None:
                return empty  # it is saved; nothing of it could be kept in view anyway
            # Kept in view; unsaved work only where converting lost something of the file's.
            back = converted.converted(old.channels, old.height, old.width, old.levels)
            return Picture(converted, not back.same_as(old.snapshot()), self.file_path,
                           convert)
        if converted is not None:
            answer = self._ask(
                "Keep the picture?",
                f"{name} draws pictures in {kind}. Keep this drawing, converted to "
                f"{kind} (its undo history too), or discard it?",
                ["Keep the picture", "Discard", "Cancel"])
            if answer == "Keep the picture":
                return Picture(converted, self.modified_outside_history, self.file_path,
                               convert)
            return empty if answer == "Discard" else None
        answer = self._ask(
            "Save changes?",
            f"{name} draws {cfg.height}x{cfg.width} pictures in {kind}: this "
            f"{old.height}x{old.width} drawing cannot be kept. Save it first?",
            ["Save", "Discard", "Cancel"])
        if answer == "Save":
            return empty if self.save() else None
        return empty if answer == "Discard" else None

    def _lay_out_for(self, cfg, name: str, picture: Picture | None = None) -> None:
        """Canvas and options for a model's config (its weights may still be loading), with
        `picture` on the canvas (by default the drawing, or an empty one if it cannot stay).
        Whatever came of the last model's completions is forgotten."""
        if picture is None:
            old = self.canvas.drawing
            fits = (old.values.shape == (cfg.channels, cfg.height, cfg.width)
                    and old.levels == cfg.levels)
            picture = (Picture(old, self.modified_outside_history, self.file_path) if fits
                       else Picture(Drawing(cfg.channels, cfg.height, cfg.width, cfg.levels),
                                    False, None))
        if picture.convert is not None:
            self.canvas.convert_drawing(picture.drawing, picture.convert)
        elif picture.drawing is not self.canvas.drawing:
            self.canvas.set_drawing(picture.drawing)  # a new history
        self.modified_outside_history = picture.modified
        self.file_path = picture.file_path
        self.last_completion = None
        self._forget_candidates()
        self._reset_run_display()
        self.options.set_model(name, cfg.num_classes, cfg.levels)
        self._show_colour_pen(cfg)
        self.canvas.set_pen_value(self.options.pen_level)
        self._update_title()

    def _show_current_model_in_options(self) -> None:
        if self.model is not None:
            cfg = self.model.config
            self.options.set_model(self.model_name, cfg.num_classes, cfg.levels)

    def _show_colour_pen(self, cfg) -> None:
        """A colour model draws with the colour pen (white to begin with), a grey one with
        the options' pen level."""
        colour = cfg.channels == 3
        self.colour_tool_bar.setVisible(colour)
        self.colour_pen_action.setVisible(colour)
        self.options.pen_box.setEnabled(not colour and cfg.levels > 2)
        if colour:
            self.colour_pen.set_levels(cfg.levels)
            self.canvas.set_pen_colour(self.colour_pen.colour)

    @Slot(object, str, object)
    def _model_loaded(self, model, name: str, card: dict) -> None:
        cfg = model.config
        self.model, self.model_name, self.card = model, name, card
        self.complete_action.setEnabled(True)
        self.statusBar().showMessage(f"Model {name}: {cfg.architecture}, "
                                     f"{cfg.height}x{cfg.width}, {cfg.levels} levels.", 5000)
        self.refresh_surprise()
        self.posterior_watcher.set_model(model)
        looks_like = self.docks["Looks like"]
        looks_like.setVisible(cfg.num_classes > 0)  # only a class-conditional model has one
        looks_like.toggleViewAction().setEnabled(cfg.num_classes > 0)
        self._watch_posterior()
        # The sampler's kernels load (or, at a new installation's first start, compile for
        # seconds) while the user draws; nothing waits for this thread.
        threading.Thread(target=warm_up_quietly, args=(model,), name=WARM_UP_THREAD,
                         daemon=True).start()
        if self.complete_when_loaded:
            self.complete_when_loaded = False
            self.complete()

    @Slot(str)
    def _model_failed(self, message: str) -> None:
        self.complete_when_loaded = False
        QMessageBox.critical(self, "Cannot open model", message)
        if self.model is not None:  # back to the model in use, as the options show it
            cfg = self.model.config
            if (self.canvas.drawing.values.shape != (cfg.channels, cfg.height, cfg.width)
                    or self.canvas.drawing.levels != cfg.levels):
                self._lay_out_for(cfg, self.model_name)  # laid out for the failed one
            self._show_current_model_in_options()
            self.complete_action.setEnabled(True)
        else:
            self.statusBar().showMessage("No model loaded: choose or open one.")

    @Slot(str)
    def _model_chosen(self, name: str) -> None:
        if name == OPEN_MODEL:
            self.open_model_dialog()
        elif name != self.model_name:
            self.open_model(name)

    @Slot()
    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", "",
                                              "PixelCNN models (*.safetensors)")
        if path:
            self.open_model(path)
        else:
            self._show_current_model_in_options()

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

    def _stop_completion_now(self) -> bool:
        """Stop a running completion and wait for it to end, so that what it sampled is an
        undo step of its own before anything else changes the picture (and a completion
        still waiting for the weights is called off). False if it would not stop in time."""
        self.complete_when_loaded = False
        if not self.runner.is_running() or self.runner.shutdown(STOP_WAIT_MS):
            return True
        self.statusBar().showMessage("The completion is still stopping; try again.", 4000)
        return False

    # -- completion ---------------------------------------------------------------------

    @Slot()
    def complete(self) -> None:
        drawing = self.canvas.drawing
        if self.loader.pending:
            self.complete_when_loaded = True
            self.statusBar().showMessage("Completing as soon as the model is loaded…")
            return
        if self.model is None or self.runner.is_running():
            return
        known = drawing.known_for_completion()
        if known.all():
            self.statusBar().showMessage(
                "Nothing to complete: the drawing reaches the bottom row. Erase what should "
                "be completed.", 5000)
            return
        self.before_completion = drawing.snapshot()
        # Nothing erased: the rows below the ink become unknown, in the same undo step.
        drawing.values[:, ~known] = 0
        drawing.known[:] = known
        self.completion_start = drawing.snapshot()
        self.canvas.update()
        self._forget_candidates()
        # Hole-aware: N candidates in one batch, then the one that fits the whole picture.
        rerank = self.options.rerank_for(drawing.known)
        self.run_candidates = rerank[0] if rerank else self.options.candidates
        try:
            self.runner.start(
                model=self.model, image=drawing.values.copy(), known=drawing.known.copy(),
                sampler=self.options.sampler, candidates=self.run_candidates,
                temperature=self.options.temperature, seed=self.options.seed,
                class_label=self.options.class_label, device=None,
                pixels_per_second=self.options.pixels_per_second,
                rank_method=rerank[1] if rerank else None)
        except (RuntimeError, ValueError) as error:
            drawing.restore(self.before_completion)
            self.before_completion = self.completion_start = None
            self.canvas.update()
            QMessageBox.critical(self, "Cannot complete", str(error))
            return
        self._reset_run_display()
        self.canvas.set_read_only(True)
        self.complete_action.setEnabled(False)
        self.stop_action.setEnabled(True)
        self._sync_history_actions()
        self.progress_label.setText(self._progress_text())
        self.statusBar().showMessage("Completing… Esc stops it, Ctrl+Z stops and undoes it.")

    @Slot()
    def stop(self) -> None:
        if self.runner.is_running():
            self.runner.stop()

    @Slot(object)
    def _samples_arrived(self, samples: list) -> None:
        drawing = self.canvas.drawing
        last = None
        for s in samples:
            if s.candidate == 0:
                drawing.values[s.channel, s.row, s.col] = s.value
                drawing.known[s.row, s.col] = True  # shown as it is drawn, R then G then B
                last = s
        if last is not None:
            self.canvas.set_cursor_position(last.row, last.col)
            self.insight.show_distribution(last.probs, last.value, last.row, last.col,
                                           last.channel, drawing.channels)
        if self.run_candidates > 1:  # they animate side by side; the canvas shows the first
            self.gallery.show_candidates(self.runner.images, drawing.levels,
                                         classes=self.runner.class_labels, on_canvas=0)
        self.progress_label.setText(self._progress_text())
        self.device_label.setText(self.runner.device_name)
        self.canvas.update()

    def _progress_text(self, finished: bool = False) -> str:
        """Pixels, not samples (a colour pixel is three, each candidate's one more): during
        the run with the recent speed, at its end with the time it took in all (an instant
        run is over before any speed can be measured)."""
        runner = self.runner
        text = f"{runner.pixels_done}/{runner.pixels_total} px"
        if self.run_candidates > 1:
            text += f" × {self.run_candidates} candidates"
        if finished:
            seconds = runner.elapsed
            text += f" in {seconds:.2f} s"
            if seconds > 0 and runner.pixels_done:
                text += f" ({runner.pixels_done / seconds:.0f} px/s)"
        elif runner.measured_pixels_per_second > 0:
            text += f" · {runner.measured_pixels_per_second:.0f} px/s"
        return text

    @Slot(str)
    def _completion_fell_back(self, message: str) -> None:
        """The GPU failed: the completion starts over on the CPU, from the picture as it was."""
        if self.before_completion is None:
            return
        drawing = self.canvas.drawing
        drawing.restore(self.completion_start)
        if self.run_candidates > 1:
            self.gallery.show_candidates(self.runner.images, drawing.levels, on_canvas=0)
        self.progress_label.setText(self._progress_text())
        self.device_label.setText(self.runner.device_name)
        self.statusBar().showMessage(message)
        self.canvas.update()

    @Slot(bool)
    def _completion_finished(self, stopped: bool) -> None:
        if self.before_completion is None:  # not a run this window started (or already ended)
            return
        drawing = self.canvas.drawing
        images = self.runner.images
        ranked = self.runner.ranked
        classes = self.runner.class_labels
        as_class = (f" as a {classes[0]}" if len(classes) == 1 and classes[0] is not None
                    else "")
        message = ("Stopped; what was sampled is kept (Ctrl+Z undoes it)." if stopped
                   else f"Completed{as_class}.")
        if images is not None and len(images):
            chosen = 0 if ranked is None else ranked.index
            drawing.values[:] = images[chosen]
            # Not |=: a pixel whose R or G was shown but whose B was not drawn stays unknown.
            drawing.known[:] = self.completion_start[1] | self._sampled_mask()
            if self.run_candidates > 1:
                self.candidate_images, self.candidate_known = images, drawing.known.copy()
                self.candidate_classes = classes
                self.candidate_put = chosen
            if ranked is not None:
                self.chosen_candidate = chosen
                how = "the most likely" if ranked.method == "best" else "resampled"
                kept_class = ranked.class_labels[chosen] if ranked.class_labels else None
                how += "" if kept_class is None else f", class {kept_class}"
                message = (f"Completed, hole-aware: kept candidate {chosen + 1} of "
                           f"{len(images)} ({how}; log p of the whole picture "
                           f"{ranked.image_loglik[chosen]:.1f} nats).")
        if self.runner.fallback_reason is not None:
            message += f" On the CPU: {self.runner.fallback_reason}."
        if drawing.known.sum() > self.completion_start[1].sum():
            self.last_completion = (self.completion_start, drawing.snapshot())
        self._keep_run_display = True  # its own step: what the run showed stays in view
        try:
            self.canvas.push_edit(self.before_completion,
                                  "Stopped completion" if stopped else "Completion")
        finally:
            self._keep_run_display = False
        self.before_completion = self.completion_start = None
        self._end_completion(message)
        self.progress_label.setText(self._progress_text(finished=True))
        for callback in self.completion_finished_callbacks:
            callback()

    def _sampled_mask(self) -> np.ndarray:
        """Pixels the completion wrote: unknown before, and reached in raster order."""
        before_known = self.completion_start[1]
        unknown = np.flatnonzero(~before_known.ravel())[:self.runner.pixels_done]
        mask = np.zeros(before_known.size, bool)
        mask[unknown] = True
        return mask.reshape(before_known.shape)

    @Slot(str)
    def _completion_failed(self, message: str) -> None:
        if self.before_completion is None:
            return
        self.canvas.drawing.restore(self.before_completion)
        self.before_completion = self.completion_start = None
        self._end_completion("Completion failed.")
        self._reset_run_display()
        QMessageBox.critical(self, "Completion failed", message)
        for callback in self.completion_finished_callbacks:
            callback()

    def _end_completion(self, message: str) -> None:
        self.canvas.set_read_only(False)
        self.canvas.clear_cursor_position()
        self.complete_action.setEnabled(True)
        self.stop_action.setEnabled(False)
        self._sync_history_actions()
        self._sync_candidates()
        self.statusBar().showMessage(message, 6000)
        self.canvas.update()
        self.refresh_surprise()

    # -- candidates ---------------------------------------------------------------------

    @Slot(int)
    def adopt_candidate(self, k: int) -> None:
        """Put candidate k on the canvas, while it shows one of them (else the strip is
        empty: the candidates belong to a picture that has moved on)."""
        images = self.candidate_images
        if (images is None or self.runner.is_running() or not 0 <= k < len(images)
                or self.candidate_on_canvas() is None):
            return
        drawing = self.canvas.drawing
        before = drawing.snapshot()
        drawing.restore((images[k], self.candidate_known))
        self.candidate_put = k
        self.canvas.push_edit(before, f"Adopt candidate {k + 1}")
        self._sync_candidates()  # framed even when it is the same picture (no step then)

    def candidate_on_canvas(self) -> int | None:
        """The candidate the canvas shows, or None. Of several alike, the one last put there
        (kept or adopted), else the first."""
        images, drawing = self.candidate_images, self.canvas.drawing
        if images is None or not np.array_equal(self.candidate_known, drawing.known):
            return None
        matches = np.flatnonzero((images == drawing.values[None]).all(axis=(1, 2, 3)))
        if self.candidate_put in matches:
            return self.candidate_put
        return int(matches[0]) if len(matches) else None

    def _sync_candidates(self) -> None:
        """The strip holds the candidates while the canvas shows one of them (framed), and
        nothing once the picture is anything else: an edit, an undo past the completion."""
        if self.runner.is_running():
            return
        k = self.candidate_on_canvas()
        if k is None:
            self.gallery.clear()
        else:
            self.gallery.show_candidates(self.candidate_images, self.canvas.drawing.levels,
                                         chosen=self.chosen_candidate,
                                         classes=self.candidate_classes, on_canvas=k)

    def _forget_candidates(self) -> None:
        self.candidate_images = self.candidate_known = None
        self.candidate_classes = ()
        self.chosen_candidate = self.candidate_put = None
        self.gallery.clear()

    def _reset_run_display(self) -> None:
        """The status bar's count and the Insight panel describe a completion on the canvas;
        once the picture has moved on (an edit, an undo, a new picture or model) they go."""
        self.progress_label.clear()
        self.insight.clear()

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

    # -- files --------------------------------------------------------------------------

    def is_modified(self) -> bool:
        """Whether the picture holds work that is not saved."""
        return self.modified_outside_history or not self.undo_stack.isClean()

    @Slot()
    def _update_title(self) -> None:
        name = self.file_path.name if self.file_path else "untitled"
        modified = " *" if self.is_modified() else ""
        self.setWindowTitle(f"{name}{modified} — PixelCNN Studio")

    def _ask(self, title: str, text: str, choices: list[str]) -> str:
        """A question answered by one of `choices`, button labels ("Save", "Discard" and
        "Cancel" are the platform's own buttons); the first is the default, and closing the
        box answers "Cancel"."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.NoButton, self)
        labels = {}
        for choice in choices:
            standard = STANDARD_BUTTONS.get(choice)
            button = (box.addButton(standard) if standard is not None
                      else box.addButton(choice, QMessageBox.ButtonRole.AcceptRole))
            labels[button] = choice
        box.setDefaultButton(next(iter(labels)))
        box.exec()
        return labels.get(box.clickedButton(), "Cancel")

    def _settle_unsaved_work(self, before: str) -> bool:
        """Asks what becomes of unsaved work `before` something replaces it: Save (False
        if that is cancelled or fails), Discard, or Cancel (False)."""
        if not self.is_modified():
            return True
        answer = self._ask("Save changes?",
                           f"The drawing has unsaved changes. Save them before {before}?",
                           ["Save", "Discard", "Cancel"])
        if answer == "Save":
            return self.save()
        return answer == "Discard"

    def _show_new_picture(self, drawing: Drawing, file_path: Path | None) -> None:
        """A picture with a history of its own: nothing of the last one's stays around."""
        self.canvas.set_drawing(drawing)
        self.modified_outside_history = False
        self.file_path = file_path
        self.last_completion = None
        self._forget_candidates()
        self._reset_run_display()
        self._update_title()

    @Slot()
    def new_drawing(self) -> None:
        if not self._stop_completion_now() or not self._settle_unsaved_work(
                "starting a new drawing"):
            return
        d = self.canvas.drawing
        self._show_new_picture(Drawing(d.channels, d.height, d.width, d.levels), None)

    @Slot()
    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self.open_image(path)

    def open_image(self, path: str | Path) -> bool:
        """Open a picture file: it replaces the drawing as one undoable step and is then
        the saved state; unsaved work is asked about first. A bad file changes nothing."""
        if not self._stop_completion_now() or not self._settle_unsaved_work(
                f"opening {Path(path).name}"):
            return False
        if not self._load_picture(path, f"Open {Path(path).name}"):
            return False
        self.file_path = Path(path).with_suffix(".png")
        self.modified_outside_history = False
        self.last_completion = None
        self._forget_candidates()
        self.undo_stack.setClean()  # as on disk: modified only after an edit
        self._update_title()
        return True

    def _load_picture(self, path: str | Path, step: str) -> bool:
        drawing = self.canvas.drawing
        try:
            values = load_image(path, drawing.height, drawing.width, drawing.channels,
                                drawing.levels)
        except ImageFileError as error:
            QMessageBox.critical(self, "Cannot open image", str(error))
            return False
        before = drawing.snapshot()
        drawing.restore((values, np.ones_like(drawing.known)))
        self.canvas.push_edit(before, step)
        return True

    @Slot()
    def paste_image(self) -> None:
        """A pasted picture is an edit of the drawing, not a file: it stays unsaved."""
        image = QApplication.clipboard().image()
        if image.isNull():
            self.statusBar().showMessage("The clipboard holds no image.", 4000)
            return
        temporary = Path(QSettings().fileName()).with_name("pasted.png")
        temporary.parent.mkdir(parents=True, exist_ok=True)
        if image.save(str(temporary)) and self._stop_completion_now():
            self._load_picture(temporary, "Paste image")

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.open_image(urls[0].toLocalFile())

    @Slot()
    def save(self) -> bool:
        if self.file_path is None:
            return self.save_as()
        return self._save_to(self.file_path)

    @Slot()
    def save_as(self) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save drawing", "drawing.png",
                                              "PNG images (*.png)")
        return bool(path) and self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        drawing = self.canvas.drawing
        try:
            save_png(path, drawing.values, drawing.levels)
        except OSError as error:
            QMessageBox.critical(self, "Cannot save", str(error))
            return False
        self.file_path = path
        self.modified_outside_history = False
        self.undo_stack.setClean()
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}.", 4000)
        return True

    def completion_to_export(self) -> tuple[Snapshot, Snapshot] | None:
        """(start, result) of the last completion, the result being the candidate on the
        canvas when it shows one; None before any completion."""
        if self.last_completion is None:
            return None
        start, result = self.last_completion
        k = self.candidate_on_canvas()
        if k is not None:
            result = (self.candidate_images[k].copy(), self.candidate_known.copy())
        return start, result

    @Slot()
    def export_gif(self) -> None:
        completion = self.completion_to_export()
        if completion is None:
            QMessageBox.information(self, "Nothing to export", "Complete a drawing first.")
            return
        start, result = completion
        pixels = len(sampling_order(start[1], result[1]))
        pace = PaceDialog.ask(pixels, self)
        if pace is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export completion", "completion.gif",
                                              "GIF animations (*.gif)")
        if not path:
            return
        try:
            frames = write_gif(path, start, result, self.canvas.drawing.levels, pace)
        except OSError as error:
            QMessageBox.critical(self, "Cannot export", str(error))
            return
        self.statusBar().showMessage(f"Exported {path}: {frames} frames.", 6000)

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
