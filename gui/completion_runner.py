"""Completion in a background thread, so the window stays responsive while a model samples.

The pattern is the one of superqt and napari: a `CompletionWorker` (a QObject,
gui/completion_worker.py) is moved to a QThread and its `run` slot does the work; the
GUI-side `CompletionRunner` here owns both, starts and stops them, and turns the worker's
output into signals for the widgets.

The worker buffers its samples instead of emitting a signal for each; the runner drains that
buffer about 60 times a second and emits them in batches. When the run fails on a GPU and
starts over on the CPU, the runner starts its images over too and says so (`fell_back`).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot

from .completion_worker import CompletionWorker
from .device_failures import FellBack

DRAIN_INTERVAL_MS = 16  # about 60 Hz, the rate a screen can show anyway
SPEED_WINDOW_S = 1.0  # measured speed is the average over about this long


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



# Threads that outlived a shutdown's wait, kept referenced until the program ends.
_unfinished: list[tuple[CompletionWorker, QThread]] = []
