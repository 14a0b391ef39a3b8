"""The window's actions and where they are shown: menus, tool bars, docks and the status
bar, built in named steps. Mixed into MainWindow, whose slots the actions trigger and whose
widgets (canvas, options, gallery, insight, looks like) the docks hold."""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .palette import ColourPen


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


class WindowLayout:
    """Builds the window's actions, menus, tool bars, docks and status bar."""

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
