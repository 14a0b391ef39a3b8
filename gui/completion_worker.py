"""The QObject that runs one completion in a background thread, paced, buffering its samples.

`CompletionRunner` (gui/completion_runner.py) moves a `CompletionWorker` to a QThread, whose
`started` runs `run`. The worker never emits a signal per pixel: a fast sampler produces
thousands of samples a second and one queued signal each would flood the event loop. It
appends samples to a locked buffer instead, which the runner drains at display rate.

A completion that fails on a GPU is run again from the beginning on the CPU with the same
seed (gui/device_failures.py says which failures count): a `FellBack` marker in the buffer
tells the runner to start its images over, so no sample of the failed run is kept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from model.seeds import new_seed

from .device_failures import (
    FellBack,
    describe_device,
    failure_message,
    fallback_reason,
    is_device_failure,
    release_device_memory,
)

if TYPE_CHECKING:
    import torch

# torch and the samplers are imported where they are used, in the worker's thread: the
# window is shown before they are loaded (see MainWindow's background model loading).


class CompletionWorker(QObject):
    """Runs one completion in whatever thread it lives in, buffering the samples.

    A run ends with exactly one of `finished` or `failed`. `started` is emitted once, when
    the completion is built, so `device_name` is known from then on; `seed` is known at
    once (one is drawn here when none is given, so a retry on the CPU can repeat the run).
    """

    started = Signal()
    finished = Signal(bool)  # stopped: True when stopped on request before the end
    failed = Signal(str)

    def __init__(self, model, image, known, *, sampler: str = "fast", candidates: int = 1,
                 temperature: float = 1.0, seed: int | None = None, class_label=None,
                 device=None, pixels_per_second: float | None = None,
                 rank_method: str | None = None):
        super().__init__()
        self._model = model
        self._rank_method = rank_method
        self.ranked = None  # with rank_method: model.rerank.Reranked once the run is done
        self._image = image
        self._known = known
        seed = new_seed() if seed is None else seed  # known here, to show and reuse
        self._options = dict(sampler=sampler, candidates=candidates, temperature=temperature,
                             seed=seed, class_label=class_label)
        self._device = device
        self._samples_per_pixel = model.config.channels * candidates
        self._buffer: deque = deque()
        self._buffer_lock = threading.Lock()
        # One condition guards the speed and the stop flag, so a pacing pause wakes up at
        # once when either changes.
        self._pacing = threading.Condition()
        self._pixels_per_second = pixels_per_second or 0.0
        self._stop_requested = False
        self.device_name: str | None = None
        self.seed: int = seed
        self.has_started = False  # True from just before `started` is emitted
        self.class_labels: tuple = ()  # per candidate, its class (None: none), once started
        self._device_used: torch.device | None = None  # by the latest attempt
        # ("finished", stopped) or ("failed", message) once the run has ended.
        self.outcome: tuple[str, bool | str] | None = None

    # Called from any thread.

    @property
    def pixels_per_second(self) -> float:
        """The requested pace; 0 means as fast as possible."""
        with self._pacing:
            return self._pixels_per_second

    def set_speed(self, pixels_per_second: float | None) -> None:
        """Change the pace, also while running; 0 or None means as fast as possible."""
        if pixels_per_second is not None and pixels_per_second < 0:
            raise ValueError(f"Speed must be 0 or more pixels per second, not {pixels_per_second}.")
        with self._pacing:
            self._pixels_per_second = pixels_per_second or 0.0
            self._pacing.notify_all()

    def request_stop(self) -> None:
        """Ask the run to stop after the current pixel; returns at once.

        A plain method, not a slot: the worker's thread is busy in `run`, so a queued call
        would only arrive after the run had ended anyway.
        """
        with self._pacing:
            self._stop_requested = True
            self._pacing.notify_all()

    def is_stop_requested(self) -> bool:
        with self._pacing:
            return self._stop_requested

    def take_samples(self) -> list:
        """Everything sampled since the last call, oldest first: `PixelSample`s, and a
        `FellBack` where the run started over on the CPU."""
        with self._buffer_lock:
            samples = list(self._buffer)
            self._buffer.clear()
        return samples

    # Runs in the worker's thread.

    @Slot()
    def run(self) -> None:
        try:
            outcome = ("finished", self._complete())
        except Exception as error:  # anything at all must reach the GUI, not kill the thread
            outcome = ("failed", failure_message(error, self.device_name))
        if outcome[0] == "failed" and self._device_used is not None:
            release_device_memory(self._device_used)  # no-op on the CPU
        self._end(*outcome)

    def _complete(self) -> bool:
        """Complete on the chosen device, or else on the CPU; True when stopped on request."""
        if self.is_stop_requested():  # stopped before it began (e.g. a quick shutdown)
            return True
        import torch

        from model import completion_device

        # The device asked for (missing: fails here), or the one measured fastest for the model.
        device = completion_device(self._model, self._device)
        self.device_name = describe_device(device)
        try:
            return self._complete_on(device)
        except Exception as error:
            if (device.type == "cpu" or not is_device_failure(error)
                    or self.is_stop_requested()):
                raise
            reason = fallback_reason(error, self.device_name)
        # Outside the except block, so the error's traceback (and the tensors its frames
        # hold) is gone before the device's cached memory is released.
        release_device_memory(device)
        self.device_name = "CPU"
        with self._buffer_lock:
            self._buffer.clear()  # undelivered samples of the failed run
            self._buffer.append(FellBack(reason))
        return self._complete_on(torch.device("cpu"))

    def _complete_on(self, device: torch.device) -> bool:
        """Build the completion on `device` and sample it; True when stopped on request."""
        from model import complete

        self._device_used = device
        completion = complete(self._model, self._image, self._known, device=device,
                              **self._options)
        self.class_labels = completion.task.class_labels
        try:
            if not self.has_started:
                self.has_started = True
                self.started.emit()
            stopped = self._sample_all(completion)
            if not stopped and self._rank_method is not None:
                # One batched forward pass over the finished candidates, still off the GUI.
                from model.rerank import rank

                self.ranked = rank(self._model, completion.images, completion.task.known,
                                   method=self._rank_method, seed=completion.seed,
                                   class_labels=completion.task.class_labels)
            return stopped
        finally:
            completion.close()  # frees the sampler's caches now rather than at collection

    def _sample_all(self, completion) -> bool:
        """Iterate the completion, pacing it; True when it stopped on request."""
        total = completion.total
        done = 0
        pixel_started = time.monotonic()
        for sample in completion:
            with self._buffer_lock:
                self._buffer.append(sample)
            done += 1
            if done % self._samples_per_pixel:
                continue  # a pixel is all candidates and channels of one position
            if done < total:
                self._pause_after_pixel(pixel_started)
                pixel_started = time.monotonic()
            if self.is_stop_requested():
                return done < total
        return False

    def _pause_after_pixel(self, pixel_started: float) -> None:
        """Wait until the pixel has taken 1/speed seconds, waking early on stop or speed."""
        with self._pacing:
            while not self._stop_requested and self._pixels_per_second > 0:
                remaining = pixel_started + 1.0 / self._pixels_per_second - time.monotonic()
                if remaining <= 0:
                    return
                self._pacing.wait(remaining)

    def _end(self, kind: str, result) -> None:
        self.outcome = (kind, result)  # set first: the runner may read it before the signal
        if kind == "failed":
            self.failed.emit(result)
        else:
            self.finished.emit(result)
