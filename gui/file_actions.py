"""The window's files: New, Open (from the menu, a drop or the clipboard), Save, Save As and
the GIF export, and the questions about unsaved work before anything replaces it.

Mixed into MainWindow, which holds the file the picture belongs to (`file_path`) and
whether it holds unsaved work its history cannot show (`modified_outside_history`).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget

from .animation import PaceDialog, sampling_order, write_gif
from .document import Drawing, Snapshot
from .image_io import IMAGE_SUFFIXES, ImageFileError, in_memory_png, load_image, save_png

IMAGE_FILTER = f"Images ({' '.join('*' + suffix for suffix in IMAGE_SUFFIXES)})"
STANDARD_BUTTONS = {"Save": QMessageBox.StandardButton.Save,
                    "Discard": QMessageBox.StandardButton.Discard,
                    "Cancel": QMessageBox.StandardButton.Cancel}


def ask(parent: QWidget, title: str, text: str, choices: list[str]) -> str:
    """A question answered by one of `choices`, button labels ("Save", "Discard" and
    "Cancel" are the platform's own buttons); the first is the default, and closing the
    box answers "Cancel"."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text,
                      QMessageBox.StandardButton.NoButton, parent)
    labels = {}
    for choice in choices:
        standard = STANDARD_BUTTONS.get(choice)
        button = (box.addButton(standard) if standard is not None
                  else box.addButton(choice, QMessageBox.ButtonRole.AcceptRole))
        labels[button] = choice
    box.setDefaultButton(next(iter(labels)))
    box.exec()
    return labels.get(box.clickedButton(), "Cancel")


class FileActions:
    """The picture's file: opening, saving, exporting, pasting, and unsaved work."""

    def is_modified(self) -> bool:
        """Whether the picture holds work that is not saved."""
        return self.modified_outside_history or not self.undo_stack.isClean()

    @Slot()
    def _update_title(self) -> None:
        name = self.file_path.name if self.file_path else "untitled"
        modified = " *" if self.is_modified() else ""
        self.setWindowTitle(f"{name}{modified} — PixelCNN Studio")

    def _settle_unsaved_work(self, before: str) -> bool:
        """Asks what becomes of unsaved work `before` something replaces it: Save (False
        if that is cancelled or fails), Discard, or Cancel (False)."""
        if not self.is_modified():
            return True
        answer = ask(self, "Save changes?",
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

    def _load_picture(self, picture: str | Path | BinaryIO, step: str) -> bool:
        """The picture (a file, or one in memory) becomes the drawing as the undo step
        `step`, converted to the model's size and levels; a bad one gives a dialog."""
        drawing = self.canvas.drawing
        try:
            values = load_image(picture, drawing.height, drawing.width, drawing.channels,
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
        """A pasted picture is an edit of the drawing, not a file: it stays unsaved. It is
        read from memory as an opened file is read, and no file is written."""
        image = QApplication.clipboard().image()
        if image.isNull():
            self.statusBar().showMessage("The clipboard holds no image.", 4000)
            return
        picture = in_memory_png(image, "the pasted picture")
        if picture is not None and self._stop_completion_now():
            self._load_picture(picture, "Paste image")

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
