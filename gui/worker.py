"""Completion in a background thread, so the window stays responsive while a model samples.

The pattern is the one of superqt and napari: a `CompletionWorker` (a QObject) is moved to a
QThread and its `run` slot does the work; the GUI-side `CompletionRunner` owns both, starts
and stops them, and turns the worker's output into signals for the widgets.

The worker never emits a signal per pixel: a fast sampler produces thousands of samples a
second and one queued signal each would flood the event loop. It appends samples to a
locked buffer instead, and the runner drains that buffer about 60 times a second and
emits them in batches.

A completion that fails on a GPU (out of memory, or another error of the device itself) is
run again from the beginning on the CPU with the same seed: a `FellBack` marker in the buffer
tells the runner to start its images over, so no sample of the failed run is kept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot

from model.seeds import new_seed

if TYPE_CHECKING:
    import torch

# torch and the samplers are imported where they are used, in the worker's thread: the
# window is shown before they are loaded (see MainWindow's background model loading).

DRAIN_INTERVAL_MS = 16  # about 60 Hz, the rate a screen can show anyway
SPEED_WINDOW_S = 1.0  # measured speed is the average over about this long


def describe_device(device: torch.device) -> str:
    """A short name for the status bar: "CPU", "CUDA", "MPS"."""
    return device.type.upper()


def is_out_of_memory(error: BaseException) -> bool:
    import torch  # loaded by now: the error came from a completion

    return (isinstance(error, torch.cuda.OutOfMemoryError)
            or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower()))


def is_device_failure(error: BaseException) -> bool:
    """Whether an error came from the accelerator itself (its memory, driver or kernels),
    so that the same completion may well succeed on the CPU."""
    import torch

    if is_out_of_memory(error) or isinstance(error, getattr(torch, "AcceleratorError", ())):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        name in text for name in ("cuda", "cudnn", "cublas", "mps", "metal"))


def failure_message(error: BaseException, device_name: str | None = None) -> str:
    """What went wrong, in a sentence a user can act on."""
    detail = str(error) or type(error).__name__
    if is_out_of_memory(error):
        return (f"Completion failed: {device_name or 'the device'} ran out of memory. "
                f"Try fewer candidates. ({detail})")
    return f"Completion failed: {detail}"


def fallback_reason(error: BaseException, device_name: str) -> str:
    """Why a completion left its device, for the status bar: "CUDA ran out of memory"."""
    if is_out_of_memory(error):
        return f"{device_name} ran out of memory"
    return f"{device_name} failed ({str(error) or type(error).__name__})"


@dataclass(frozen=True)
class FellBack:
    """In the sample buffer: the run failed on its device and starts over on the CPU;
    every sample before this marker is void."""

    reason: str  # "CUDA ran out of memory"

    @property
    def message(self) -> str:
        return f"{self.reason}; completing on the CPU instead."


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

        from model import pick_device

        device = pick_device(self._device)  # a device asked for but missing fails here
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


class CompletionRunner(QObject):
    """The GUI-side owner of a background completion: one run at a time.

    `progressed` carries a list of `PixelSample`s in raster order; every run ends with one
    `finished(stopped)` or one `failed(message)`, after the last `progressed`. When the run
    fails on a GPU and starts over on the CPU, `fell_back(message)` comes between the failed
    attempt's batches and the CPU's: by then `images` and `done` are back at the start.
    """

    started = Signal()
    progressed = Signal(object)  # list[PixelSample]
    fell_back = Signal(str)  # "CUDA ran out of memory; completing on the CPU instead."
    finished = Signal(bool)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._worker: CompletionWorker | None = None
        self._worker_thread: QThread | None = None
        self._images: np.ndarray | None = None
        self._start_images: np.ndarray | None = None
        self._done = 0
        self._total = 0
        self._samples_per_pixel = 1
        self._speed = 0.0
        self._device_name: str | None = None
        self._seed: int | None = None
        self._ranked = None
        self._class_labels: tuple = ()
        self._fallback: FellBack | None = None
        self._announced = False  # whether `started` was emitted for the current run
        self._progress_marks: deque = deque()  # (time, pixels done) at recent drains
        self._started_at: float | None = None  # monotonic times of the current or last run
        self._ended_at: float | None = None
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_INTERVAL_MS)
        self._drain_timer.timeout.connect(self._drain)
        application = QCoreApplication.instance()
        if application is not None:
            # A safety net: a QThread destroyed while running aborts the whole program.
            application.aboutToQuit.connect(self._shut_down_on_quit)

    # Starting and stopping.

    def start(self, model, image, known, *, sampler: str = "fast", candidates: int = 1,
              temperature: float = 1.0, seed: int | None = None, class_label=None,
              device=None, pixels_per_second: float | None = None,
              rank_method: str | None = None) -> None:
        """Start completing the unknown pixels in the background.

        `pixels_per_second` paces it (0: as fast as possible); None keeps the speed last
        given to `set_speed`. With `rank_method` ("best" or "resample") the finished
        candidates are scored on the whole image and `ranked` says which one to keep.
        Problems with the model or options arrive as `failed`.
        """
        if self.is_running():
            raise RuntimeError("A completion is already running; stop it before starting "
                               "another.")
        if pixels_per_second is not None:
            self.set_speed(pixels_per_second)
        self._reset_progress(model, image, known, candidates)
        self._ranked = None
        self._class_labels = ()
        self._fallback = None
        self._announced = False
        worker = CompletionWorker(model, image, known, sampler=sampler, candidates=candidates,
                                  temperature=temperature, seed=seed, class_label=class_label,
                                  device=device, pixels_per_second=self._speed,
                                  rank_method=rank_method)
        self._seed = worker.seed
        worker_thread = QThread()
        worker_thread.setObjectName("completion")
        worker.moveToThread(worker_thread)
        worker_thread.started.connect(worker.run)
        # Direct: quit from the worker's thread itself, so `shutdown` can wait without
        # needing the GUI's event loop to deliver the quit.
        worker.finished.connect(worker_thread.quit, Qt.ConnectionType.DirectConnection)
        worker.failed.connect(worker_thread.quit, Qt.ConnectionType.DirectConnection)
        worker.started.connect(self._on_worker_started)
        worker.finished.connect(self._on_worker_ended)
        worker.failed.connect(self._on_worker_ended)
        self._worker, self._worker_thread = worker, worker_thread
        self._drain_timer.start()
        worker_thread.start()

    def is_running(self) -> bool:
        return self._worker is not None

    @Slot()
    def stop(self) -> None:
        """Ask the run to stop after the current pixel; `finished(True)` follows."""
        if self._worker is not None:
            self._worker.request_stop()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop and wait for the thread to end (for closeEvent); True when it has ended.

        The last samples are still delivered and `finished` or `failed` is emitted.
        """
        if self._worker is None:
            return True
        self._worker.request_stop()
        self._worker_thread.quit()
        if not self._worker_thread.wait(timeout_ms):
            # Still inside one long model call: keep both objects alive until it returns,
            # since destroying a running QThread aborts the program.
            if (self._worker, self._worker_thread) not in _unfinished:
                _unfinished.append((self._worker, self._worker_thread))
            return False
        self._end_run()
        return True

    def set_speed(self, pixels_per_second: float | None) -> None:
        """Change the pace (0 or None: as fast as possible), also while running."""
        if pixels_per_second is not None and pixels_per_second < 0:
            raise ValueError(f"Speed must be 0 or more pixels per second, not {pixels_per_second}.")
        self._speed = pixels_per_second or 0.0
        if self._worker is not None:
            self._worker.set_speed(self._speed)

    # What the GUI reads.

    @property
    def speed(self) -> float:
        """The requested pace in pixels per second; 0 means as fast as possible."""
        return self._speed

    @property
    def images(self) -> np.ndarray | None:
        """(candidates, C, H, W) uint8: a copy of the images with every sample delivered."""
        return None if self._images is None else self._images.copy()

    @property
    def done(self) -> int:
        """Samples delivered through `progressed` so far in this run."""
        return self._done

    @property
    def total(self) -> int:
        """Samples the whole run yields (unknown pixels x channels x candidates)."""
        return self._total

    @property
    def pixels_done(self) -> int:
        """Pixels delivered so far: positions with every candidate's every channel drawn."""
        return self._done // self._samples_per_pixel

    @property
    def pixels_total(self) -> int:
        """Pixels (positions) the whole run completes, whatever its channels and candidates."""
        return self._total // self._samples_per_pixel

    @property
    def elapsed(self) -> float:
        """Seconds from start() to the end of the current or last run (to now while it
        runs): what an instant run's speed is measured over, where recent drains are too few."""
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return max(0.0, end - self._started_at)

    @property
    def measured_pixels_per_second(self) -> float:
        """Pixels (all candidates and channels of one position) per second, recently."""
        if len(self._progress_marks) < 2:
            return 0.0
        (t0, p0), (t1, p1) = self._progress_marks[0], self._progress_marks[-1]
        return (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def device_name(self) -> str | None:
        return self._device_name

    @property
    def seed(self) -> int | None:
        """The seed of the current or last run; reuse it to repeat the run."""
        return self._seed

    @property
    def fallback_reason(self) -> str | None:
        """Why the current or last run left its GPU for the CPU ("CUDA ran out of
        memory"); None when it did not."""
        return None if self._fallback is None else self._fallback.reason

    @property
    def ranked(self):
        """The last run's model.rerank.Reranked, when it was started with a rank_method
        and ran to the end; else None."""
        return self._ranked

    @property
    def class_labels(self) -> tuple:
        """Per candidate of the current or last run, the class it is conditioned on (None:
        no class); known from `started` on."""
        return self._class_labels

    @property
    def worker(self) -> CompletionWorker | None:
        return self._worker

    @property
    def worker_thread(self) -> QThread | None:
        return self._worker_thread

    # Internals.

    def _reset_progress(self, model, image, known, candidates: int) -> None:
        config = model.config
        image = np.asarray(image, np.uint8)
        if image.ndim == 2:
            image = image[None]
        known = np.asarray(known, bool)
        size = (config.height, config.width)
        if image.shape != (config.channels, *size) or known.shape != size:
            raise ValueError(
                f"An image of shape {image.shape} with a known-pixel mask of shape "
                f"{known.shape} does not fit a model for {config.channels}x{config.height}x"
                f"{config.width} images.")
        # The same starting point as the sampler's: known pixels kept, the rest 0.
        start = np.where(known[None], image, 0).astype(np.uint8)
        self._start_images = np.repeat(start[None], candidates, axis=0)
        self._images = self._start_images.copy()
        self._samples_per_pixel = config.channels * candidates
        self._total = int((~known).sum()) * self._samples_per_pixel
        self._done = 0
        self._device_name = None
        self._progress_marks.clear()
        self._started_at, self._ended_at = time.monotonic(), None

    @Slot()
    def _shut_down_on_quit(self) -> None:
        self.shutdown()

    @Slot()
    def _on_worker_started(self) -> None:
        # Queued, so it may be a stale one of a run that `shutdown` already ended (and
        # `sender()` cannot tell: a new worker may have the old one's address). Act on the
        # current worker's state instead, once per run.
        if self._worker is None or not self._worker.has_started or self._announced:
            return
        self._announced = True
        self._device_name = self._worker.device_name
        self._class_labels = self._worker.class_labels
        self.started.emit()

    @Slot()
    def _on_worker_ended(self) -> None:
        # Queued, so it may arrive after `shutdown` ended the run, or (stale) during a
        # newer one: act only when the current worker has really ended.
        if self._worker is not None and self._worker.outcome is not None:
            self._worker_thread.wait()  # quit was already called; this is only the exit
            self._end_run()

    @Slot()
    def _drain(self) -> None:
        if self._worker is None:
            return
        samples = []
        for item in self._worker.take_samples():
            if isinstance(item, FellBack):
                self._deliver(samples)
                samples = []
                self._start_over(item)
            else:
                samples.append(item)
        self._deliver(samples)

    def _deliver(self, samples: list) -> None:
        if not samples:
            return
        for sample in samples:
            self._images[sample.candidate, sample.channel, sample.row, sample.col] = sample.value
        self._done += len(samples)
        self._mark_progress()
        self.progressed.emit(samples)

    def _start_over(self, fallback: FellBack) -> None:
        """The run failed on its GPU and starts again on the CPU: forget its samples."""
        self._fallback = fallback
        self._images = self._start_images.copy()
        self._done = 0
        self._progress_marks.clear()
        self._device_name = "CPU"
        self.fell_back.emit(fallback.message)

    def _mark_progress(self) -> None:
        now = time.monotonic()
        self._progress_marks.append((now, self._done // self._samples_per_pixel))
        while len(self._progress_marks) > 2 and now - self._progress_marks[0][0] > SPEED_WINDOW_S:
            self._progress_marks.popleft()

    def _end_run(self) -> None:
        """The thread has ended: deliver the last samples, let go of it, and say how."""
        self._drain()
        self._drain_timer.stop()
        self._ended_at = time.monotonic()
        worker = self._worker
        self._device_name = worker.device_name or self._device_name
        self._ranked = worker.ranked
        self._class_labels = worker.class_labels or self._class_labels
        self._worker = self._worker_thread = None
        kind, result = worker.outcome or ("finished", True)
        if kind == "failed":
            self.failed.emit(result)
        else:
            self.finished.emit(result)


def release_device_memory(device: torch.device) -> None:
    """Hand the blocks PyTorch cached on a failed device back: after running out of memory
    they only get in the way of whatever runs there next."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


# Threads that outlived a shutdown's wait, kept referenced until the program ends.
_unfinished: list[tuple[CompletionWorker, QThread]] = []
