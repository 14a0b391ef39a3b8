"""What the window does in the background once it knows its model: load the weights
(importing PyTorch on the way) and warm up the sampler's kernels, each in a thread of its
own, reporting back to the GUI thread through queued signals."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from PySide6.QtCore import QObject, Qt, Signal, Slot

from model.card import ModelFileError


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


def start_warm_up(model, choose_device: bool = False) -> None:
    """Load the sampler's kernels for `model` (or, at a new installation's first start,
    compile them for seconds) in a background thread while the user draws; nothing waits
    for it. Then, with `choose_device`, measure which device completes faster
    (`device_chosen`). Once it is done, the GUI thread freezes the start-up objects."""
    warm_ups = warm_up_reports()
    threading.Thread(target=warm_ups.run, args=(model, choose_device), name=WARM_UP_THREAD,
                     daemon=True).start()


def warm_up_reports() -> _WarmUpsDone:
    """What the warm-ups report to the GUI thread: `device_chosen(model, DeviceChoice)`."""
    return _WarmUpsDone.instance()


def wait_for_warm_ups(seconds: float = 30.0) -> None:
    """Let the background kernel warm-ups finish (waiting at most `seconds` in all). Called
    before the process exits: a warm-up cut off at exit inside a kernel (then one of Numba's
    parallel regions) aborted the packaged app ("terminate called without an active
    exception")."""
    deadline = time.monotonic() + seconds
    for thread in threading.enumerate():
        if thread.name == WARM_UP_THREAD:
            thread.join(max(0.0, deadline - time.monotonic()))


def exit_process(code: int) -> NoReturn:
    """End the app's process. The Looks-like panel's compile (gui/looks_like.py) may still
    be running: it cannot be stopped, takes seconds, and a process that exits normally
    around PyTorch's busy threads aborts ("terminate called without an active exception").
    Then the process ends at once instead, skipping the interpreter's clean-up: by now the
    window is closed and the settings are written."""
    from .looks_like import SCORER_THREAD

    if any(thread.name == SCORER_THREAD for thread in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def warm_up_quietly(model) -> None:
    from model.fast import warm_up

    try:
        warm_up(model)
    except Exception as error:  # noqa: BLE001 - a completion reports any real problem itself
        print(f"Kernel warm-up failed: {error}", file=sys.stderr)


class _WarmUpsDone(QObject):
    """Carries "a warm-up is done" from its thread to the GUI thread. One for the process,
    made in the GUI thread and never deleted, so that a warm-up outliving its window still
    has somewhere to report."""

    finished = Signal()
    device_chosen = Signal(object, object)  # the model, its model.devices.DeviceChoice
    _instance: _WarmUpsDone | None = None

    @classmethod
    def instance(cls) -> _WarmUpsDone:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        super().__init__()
        self.finished.connect(self._freeze, Qt.ConnectionType.QueuedConnection)

    def run(self, model, choose_device: bool) -> None:
        """In the warm-up thread."""
        warm_up_quietly(model)
        if choose_device:
            from model.devices import choice_for

            try:
                self.device_chosen.emit(model, choice_for(model))
            except Exception as error:  # noqa: BLE001 - completions then measure for themselves
                print(f"Measuring the devices failed: {error}", file=sys.stderr)
        self.finished.emit()

    @Slot()
    def _freeze(self) -> None:
        freeze_start_up_objects()


_start_up_frozen = False


def freeze_start_up_objects() -> None:
    """Take what the process has made by the time its first model and kernels are ready out
    of the garbage collector's walks, once: PyTorch's, Numba's and Qt's modules and their
    like (about 260,000 objects), which live as long as the process. A full collection walked
    them all, 210 ms with the GIL held (the window and the animation stood still), about
    once in 60 nine-candidate completions, whose samples wait in the animation long enough
    to reach the oldest generation. Called in the GUI thread, between two of its events:
    from the warm-up thread it froze whatever the GUI thread held at that moment, the
    passing objects of a handler half done included, for the rest of the process."""
    global _start_up_frozen
    if not _start_up_frozen:
        _start_up_frozen = True
        gc.freeze()
