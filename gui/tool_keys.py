"""Single-key shortcuts (tools, brush size, Complete) that work whatever has focus in the
main window.

Qt lets the focused widget claim a key before any shortcut sees it (a ShortcutOverride
event): a spin box claims every key that types a character, so P or Space did nothing while
the seed box had focus, and a combo box keeps `[` and `]` for itself. No widget in the main
window takes text other than digits, so there these keys always mean the window's tools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import QApplication, QWidget

NO_MODIFIER = Qt.KeyboardModifier.NoModifier


def single_keys(actions: Iterable[QAction]) -> set[Qt.Key]:
    """The keys of the actions' shortcuts that are one key without a modifier."""
    keys = set()
    for action in actions:
        for sequence in action.shortcuts():
            if sequence.count() == 1 and sequence[0].keyboardModifiers() == NO_MODIFIER:
                keys.add(sequence[0].key())
    return keys


class ToolKeys(QObject):
    """An application-wide event filter for one window: inside it, the single-key
    shortcuts of `actions` win over the focused widget, and the characters in `by_text`
    (matched by the text they type: on some keyboard layouts `[` is not Key_BracketLeft)
    call their function."""

    def __init__(self, window: QWidget, actions: Iterable[QAction],
                 by_text: dict[str, Callable[[], None]]):
        super().__init__(window)
        self.window = window
        self.keys = single_keys(actions)
        self.by_text = by_text
        QApplication.instance().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            return False
        if not isinstance(watched, QWidget) or watched.window() is not self.window:
            return False
        key_event: QKeyEvent = event
        modifiers = key_event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if modifiers & ~Qt.KeyboardModifier.ShiftModifier:
            return False  # Ctrl, Alt or Meta: a shortcut of its own
        handler = self.by_text.get(key_event.text())
        if handler is not None:
            if kind == QEvent.Type.KeyPress:
                handler()
            else:
                event.accept()  # the key press is to come, and is handled above
            return True
        # Not accepted and not delivered: Qt goes on to the window's shortcut.
        return (kind == QEvent.Type.ShortcutOverride and modifiers == NO_MODIFIER
                and key_event.key() in self.keys)
