"""Switching the window's model: reading its card, laying the canvas and the options out
for it, keeping the drawing where it can (converted to the model's levels, its history
too) or asking what becomes of unsaved work, then the weights, loaded at once or in the
background (see model_loading.py).

Mixed into MainWindow, which holds the model in use (`model`, `model_name`, `card`) and the
background `loader`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox

# Only torch-free parts of the model package at import time: the window is shown first and
# PyTorch is loaded with the model's weights (in the background when the app starts).
from model.card import ModelFileError, read_card
from model.registry import resolve_model

from .device_choice import keep, label_text, recall
from .document import Drawing, Snapshot, convert_snapshot
from .file_actions import ask
from .model_loading import start_warm_up
from .options import OPEN_MODEL


class Picture(NamedTuple):
    """What the canvas is to show with a model: the drawing, whether it holds unsaved work
    that its history cannot show, the file it belongs to, and (for the drawing converted to
    the model's levels) how to convert the history's steps alike; without it the history
    starts afresh."""

    drawing: Drawing
    modified: bool
    file_path: Path | None
    convert: Callable[[Snapshot], Snapshot] | None = None


class ModelSwitching:
    """Open a model, by name or from a file, and what the window does when it arrives or fails."""

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
            answer = ask(
                self, "Keep the picture?",
                f"{name} draws pictures in {kind}. Keep this drawing, converted to "
                f"{kind} (its undo history too), or discard it?",
                ["Keep the picture", "Discard", "Cancel"])
            if answer == "Keep the picture":
                return Picture(converted, self.modified_outside_history, self.file_path,
                               convert)
            return empty if answer == "Discard" else None
        answer = ask(
            self, "Save changes?",
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
        self.device_choice = recall(model, name, card)
        self.device_label.setText(label_text(self.device_choice))
        # The sampler's kernels, while the user draws; then the devices, if not known yet.
        start_warm_up(model, choose_device=self.device_choice is None)
        if self.complete_when_loaded:
            self.complete_when_loaded = False
            self.complete()

    @Slot(object, object)
    def _device_chosen(self, model, choice) -> None:
        """The warm-up measured the devices for `model`: keep the choice for next time."""
        if model is not self.model:
            return
        self.device_choice = choice
        keep(self.model_name, self.card, choice)
        if not self.runner.is_running():
            self.device_label.setText(label_text(choice))

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
