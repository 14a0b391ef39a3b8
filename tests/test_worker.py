import threading
import time

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

import model as model_package
from conftest import FailingGPU, cuda_out_of_memory, tiny_model
from gui.completion_runner import CompletionRunner
from gui.completion_worker import CompletionWorker
from model import complete
from model.memory import MemoryLimitError

HEIGHT, WIDTH = 6, 7  # tiny_model's image size


def top_rows_known(rows: int) -> np.ndarray:
    known = np.zeros((HEIGHT, WIDTH), bool)
    known[:rows] = True
    return known


def half_digit() -> np.ndarray:
    image = np.zeros((1, HEIGHT, WIDTH), np.uint8)
    image[0, :3, 3] = 1
    return image


class Recorder:
    """Collects what a runner emits."""

    def __init__(self, runner: CompletionRunner):
        self.batches: list[list] = []
        self.ended: list[tuple] = []
        self.fell_back: list[str] = []
        self.samples_before_fallback: list = []
        runner.progressed.connect(self.batches.append)
        runner.fell_back.connect(self._fell_back)
        runner.finished.connect(lambda stopped: self.ended.append(("finished", stopped)))
        runner.failed.connect(lambda message: self.ended.append(("failed", message)))

    def _fell_back(self, message: str) -> None:
        self.fell_back.append(message)
        self.samples_before_fallback += self.samples
        self.batches.clear()

    @property
    def samples(self) -> list:
        """Those delivered since the start, or since the run started over on the CPU."""
        return [sample for batch in self.batches for sample in batch]


@pytest.fixture
def runner(qtbot):
    runner = CompletionRunner()
    yield runner
    runner.shutdown()


def test_runner_completes_the_unknown_pixels_in_raster_order_in_batches(qtbot, runner):
    model, known = tiny_model(), top_rows_known(3)
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.finished, timeout=20_000) as finished:
        runner.start(model, half_digit(), known, candidates=2, seed=7)
        assert runner.is_running()
    assert finished.args == [False]
    assert not runner.is_running()

    expected = [(k, row, col, 0) for row, col in zip(*np.nonzero(~known), strict=True)
                for k in range(2)]
    assert [(s.candidate, s.row, s.col, s.channel) for s in recorder.samples] == expected
    assert runner.done == runner.total == len(expected)
    assert len(recorder.batches) < len(recorder.samples)
    assert recorder.ended == [("finished", False)]

    reference = complete(model, half_digit(), known, candidates=2, seed=7).run()
    np.testing.assert_array_equal(runner.images, reference)
    assert [s.value for s in recorder.samples] == [
        reference[k, c, r, col] for k, r, col, c in expected]
    assert runner.device_name == "CPU" and runner.seed == 7


def test_sampling_happens_outside_the_gui_thread(qtbot, runner, monkeypatch):
    threads = []

    def recording_complete(*args, **kwargs):
        threads.append(threading.current_thread())
        return complete(*args, **kwargs)

    # The worker imports the samplers in its own thread, from the model package.
    monkeypatch.setattr(model_package, "complete", recording_complete)
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(3))
    assert threads and threads[0] is not threading.main_thread()


def test_an_image_of_the_wrong_size_is_refused_at_once(runner):
    with pytest.raises(ValueError, match="does not fit a model for 1x6x7 images"):
        runner.start(tiny_model(), np.zeros((1, 5, 5), np.uint8), np.zeros((5, 5), bool))
    assert not runner.is_running()


def test_starting_while_running_is_refused(qtbot, runner):
    runner.start(tiny_model(), half_digit(), top_rows_known(0), pixels_per_second=20)
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(tiny_model(), half_digit(), top_rows_known(0))
    with qtbot.waitSignal(runner.finished, timeout=5_000):
        runner.stop()


def test_stopping_mid_run_keeps_a_prefix_of_the_samples(qtbot, runner):
    model, known = tiny_model(), top_rows_known(0)
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.started, timeout=20_000):
        runner.start(model, half_digit(), known, pixels_per_second=50, seed=3)
    qtbot.waitUntil(lambda: runner.done >= 3, timeout=5_000)
    with qtbot.waitSignal(runner.finished, timeout=5_000) as finished:
        runner.stop()
    assert finished.args == [True]
    assert recorder.ended == [("finished", True)]

    full = list(complete(model, half_digit(), known, seed=3))
    kept = recorder.samples
    assert 3 <= len(kept) < len(full)
    assert [(s.row, s.col, s.value) for s in kept] == [
        (s.row, s.col, s.value) for s in full[:len(kept)]]
    assert runner.done == len(kept) < runner.total
    # The images hold exactly the kept samples; the rest is still unknown (0).
    images = runner.images
    for sample in full[len(kept):]:
        assert images[0, 0, sample.row, sample.col] == 0


def test_shutdown_while_running_returns_promptly_and_ends_the_thread(qtbot, runner):
    with qtbot.waitSignal(runner.started, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(0), pixels_per_second=2)
    worker_thread = runner.worker_thread
    began = time.monotonic()
    assert runner.shutdown(timeout_ms=5000)
    assert time.monotonic() - began < 2.0
    assert worker_thread.isFinished()
    assert not runner.is_running()
    assert runner.shutdown()  # nothing left to stop


def test_shutdown_right_after_start_ends_the_thread(qtbot, runner):
    runner.start(tiny_model(), half_digit(), top_rows_known(0))
    worker_thread = runner.worker_thread
    assert runner.shutdown()
    assert worker_thread.isFinished()


def test_an_error_in_the_model_reaches_failed_with_its_message(qtbot, runner, monkeypatch):
    model = tiny_model()

    def broken_forward(*args, **kwargs):
        raise RuntimeError("the weights are on fire")

    monkeypatch.setattr(model, "forward", broken_forward)
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.failed, timeout=20_000) as failed:
        runner.start(model, half_digit(), top_rows_known(3), sampler="reference")
    assert failed.args == ["Completion failed: the weights are on fire"]
    assert recorder.ended == [("failed", "Completion failed: the weights are on fire")]
    assert not runner.is_running()


def test_running_out_of_device_memory_is_reported_clearly(qtbot, runner, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model_package, "complete", out_of_memory)
    with qtbot.waitSignal(runner.failed, timeout=5_000) as failed:
        runner.start(tiny_model(), half_digit(), top_rows_known(3))
    message = failed.args[0]
    # On the CPU there is nowhere to fall back to.
    assert message.startswith("Completion failed: CPU ran out of memory. Try fewer")
    assert "Tried to allocate 2.00 GiB" in message


def test_invalid_options_fail_with_the_samplers_message(qtbot, runner):
    with qtbot.waitSignal(runner.failed, timeout=5_000) as failed:
        runner.start(tiny_model(), half_digit(), top_rows_known(3), class_label=4)
    assert "Class 4 is not available" in failed.args[0]


def timed_run(qtbot, runner, pixels_per_second) -> float:
    began = time.monotonic()
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(4),
                     pixels_per_second=pixels_per_second)
    return time.monotonic() - began


def test_the_speed_setting_paces_the_sampler(qtbot, runner):
    timed_run(qtbot, runner, 0)  # warm-up: the first run may compile or load kernels
    unlimited = timed_run(qtbot, runner, 0)
    slow = timed_run(qtbot, runner, 20)  # 14 pixels: 13 pauses of 50 ms
    assert slow >= 0.5
    assert slow > 2 * unlimited


def test_the_speed_can_change_while_running(qtbot, runner):
    with qtbot.waitSignal(runner.started, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(0), pixels_per_second=1)
    assert runner.speed == 1
    with qtbot.waitSignal(runner.finished, timeout=5_000) as finished:
        runner.set_speed(0)  # 42 pixels at 1 px/s would take 41 s
    assert finished.args == [False]
    assert runner.done == runner.total


def test_runner_measures_its_speed(qtbot, runner):
    with qtbot.waitSignal(runner.started, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(0), pixels_per_second=40)
    qtbot.waitUntil(lambda: runner.done >= 15, timeout=5_000)
    assert 10 < runner.measured_pixels_per_second < 80
    runner.stop()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=5_000)


def test_runner_counts_pixels_not_samples_and_times_the_whole_run(qtbot, runner):
    """A colour pixel is three samples, and each candidate's one more: the status bar counts
    pixels; and an instant run, over before any speed is measured, still has its time."""
    colour = tiny_model(channels=3, distribution="categorical", levels=8)
    image = np.zeros((3, HEIGHT, WIDTH), np.uint8)
    assert runner.elapsed == 0.0
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(colour, image, top_rows_known(4), candidates=2, pixels_per_second=0)
        assert runner.pixels_total == 2 * WIDTH and runner.total == 2 * WIDTH * 3 * 2
    assert runner.pixels_done == runner.pixels_total and runner.done == runner.total
    took = runner.elapsed
    assert 0 < took < 20
    time.sleep(0.05)
    assert runner.elapsed == took  # the run's time, not the time since it began


def test_a_worker_counts_a_pixel_as_all_its_candidates(qtbot):
    # Driven directly in this thread: 2 candidates x 14 pixels at 20 px/s take ~0.65 s, not
    # 1.35 s as they would if every sample were paced.
    worker = CompletionWorker(tiny_model(), half_digit(), top_rows_known(4), candidates=2,
                              pixels_per_second=20)
    ended = []
    worker.finished.connect(ended.append)
    began = time.monotonic()
    worker.run()
    elapsed = time.monotonic() - began
    assert ended == [False]
    assert len(worker.take_samples()) == 28 and worker.take_samples() == []
    assert 0.6 <= elapsed < 1.1
    assert worker.device_name == "CPU" and worker.seed is not None


def test_a_run_started_right_after_shutdown_ends_normally(qtbot, runner):
    recorder = Recorder(runner)
    runner.start(tiny_model(), half_digit(), top_rows_known(0), pixels_per_second=5)
    assert runner.shutdown()
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(4))
    qtbot.wait(50)  # let any late signal of the first run arrive
    assert recorder.ended == [("finished", True), ("finished", False)]
    assert runner.done == runner.total == 14


def test_start_keeps_the_speed_set_before_it(qtbot, runner):
    runner.set_speed(1)
    with qtbot.waitSignal(runner.started, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(0))
    assert runner.worker.pixels_per_second == 1
    with pytest.raises(ValueError, match="0 or more"):
        runner.set_speed(-1)


def test_a_rank_method_scores_the_finished_candidates_in_the_worker(qtbot, runner):
    from model.rerank import rank

    model = tiny_model()
    known = top_rows_known(3)
    known[-1] = True  # known pixels after the unknown ones: what ranking is for
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(model, half_digit(), known, candidates=5, seed=2, rank_method="resample")
    expected = rank(model, runner.images, known, method="resample", seed=2)
    ranked = runner.ranked
    assert ranked is not None and ranked.index == expected.index
    np.testing.assert_allclose(ranked.evidence_loglik, expected.evidence_loglik)
    # A run without a rank method leaves none behind.
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(model, half_digit(), known, candidates=2, seed=2)
    assert runner.ranked is None


def as_tuples(samples) -> list[tuple]:
    return [(s.candidate, s.row, s.col, s.channel, s.value) for s in samples]


@pytest.mark.parametrize(("fail_after", "seed"), [(None, 5), (0, None), (9, 11)])
def test_a_gpu_out_of_memory_starts_the_completion_over_on_the_cpu(qtbot, runner, monkeypatch,
                                                                   fail_after, seed):
    # Failing while building, at the first sample, or after 9 samples were shown.
    gpu = FailingGPU(monkeypatch, cuda_out_of_memory(), fail_after)
    gpu.release = threading.Event()
    model, known = tiny_model(), top_rows_known(2)
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.finished, timeout=20_000) as finished:
        runner.start(model, half_digit(), known, candidates=2, seed=seed)
        if fail_after:
            qtbot.waitUntil(lambda: len(recorder.samples) >= fail_after, timeout=5_000)
        gpu.release.set()
    assert finished.args == [False] and gpu.devices == ["cuda", "cpu"]
    assert recorder.fell_back == ["CUDA ran out of memory; completing on the CPU instead."]
    assert runner.fallback_reason == "CUDA ran out of memory" and runner.device_name == "CPU"
    # What was shown of the failed attempt (and only that) came before the fallback.
    assert len(recorder.samples_before_fallback) == (fail_after or 0)

    # From the fallback on: every sample of a plain CPU run with the same seed, once.
    assert runner.seed is not None and (seed is None or runner.seed == seed)
    cpu = complete(model, half_digit(), known, candidates=2, seed=runner.seed, device="cpu")
    assert as_tuples(recorder.samples) == as_tuples(cpu)
    np.testing.assert_array_equal(runner.images, cpu.images)
    assert runner.done == runner.total == len(recorder.samples)


def torch_error(name: str, message: str) -> Exception:
    """torch.<name>(message); skips where this PyTorch (an older one in pyproject's range)
    has no such error."""
    if not hasattr(torch, name):
        pytest.skip(f"PyTorch {torch.__version__} has no torch.{name}.")
    return getattr(torch, name)(message)


# Told apart by type, whatever the message says: none of these names a device.
@pytest.mark.parametrize(("make_error", "reason"), [
    (lambda: torch_error("OutOfMemoryError", "Tried to allocate 2.00 GiB"),
     "CUDA ran out of memory"),
    (lambda: torch_error("AcceleratorError", "an illegal memory access was encountered"),
     "CUDA failed (an illegal memory access was encountered)"),
    (lambda: RuntimeError("the weights are on fire"), "CUDA failed (the weights are on fire)"),
    (lambda: NotImplementedError("no kernel for this operator"),
     "CUDA failed (no kernel for this operator)"),
], ids=["out-of-memory", "accelerator-error", "runtime-error", "not-implemented"])
def test_a_runtime_error_on_the_gpu_starts_the_completion_over_on_the_cpu(
        qtbot, runner, monkeypatch, make_error, reason):
    gpu = FailingGPU(monkeypatch, make_error(), fail_after=3)
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(3), seed=1)
    assert gpu.devices == ["cuda", "cpu"]
    assert recorder.fell_back == [f"{reason}; completing on the CPU instead."]
    assert runner.fallback_reason == reason and runner.done == runner.total


@pytest.mark.parametrize("error", [
    ValueError("the weights are on fire"),
    MemoryLimitError("the weights are on fire"),  # a ValueError too
], ids=["value-error", "memory-limit"])
def test_a_refusal_on_the_gpu_is_reported_not_retried(qtbot, runner, monkeypatch, error):
    gpu = FailingGPU(monkeypatch, error, fail_after=3)
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.failed, timeout=20_000) as failed:
        runner.start(tiny_model(), half_digit(), top_rows_known(3))
    assert failed.args == ["Completion failed: the weights are on fire"]
    assert gpu.devices == ["cuda"] and recorder.fell_back == []
    assert runner.fallback_reason is None


def test_an_error_on_the_cpu_is_reported_not_retried(qtbot, runner, monkeypatch):
    attempts = []

    def failing_complete(*args, device, **kwargs):
        attempts.append(torch.device(device).type)
        raise RuntimeError("the weights are on fire")

    monkeypatch.setattr(model_package, "complete", failing_complete)
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.failed, timeout=5_000) as failed:
        runner.start(tiny_model(), half_digit(), top_rows_known(3), device="cpu")
    assert failed.args == ["Completion failed: the weights are on fire"]
    assert attempts == ["cpu"] and recorder.fell_back == []


def test_a_bug_is_retried_on_the_cpu_and_reported_from_there(qtbot, runner, monkeypatch):
    model = tiny_model()

    def broken_forward(*args, **kwargs):
        raise RuntimeError("the weights are on fire")

    monkeypatch.setattr(model, "forward", broken_forward)
    gpu = FailingGPU(monkeypatch, RuntimeError("the weights are on fire"))
    recorder = Recorder(runner)
    with qtbot.waitSignal(runner.failed, timeout=20_000) as failed:
        runner.start(model, half_digit(), top_rows_known(3), sampler="reference")
    assert gpu.devices == ["cuda", "cpu"]
    assert recorder.fell_back == ["CUDA failed (the weights are on fire); completing on the "
                                  "CPU instead."]
    assert failed.args == ["Completion failed: the weights are on fire"]
    assert runner.device_name == "CPU"


def test_a_gpu_that_fails_after_a_stop_request_is_not_retried(qtbot, runner, monkeypatch):
    gpu = FailingGPU(monkeypatch, cuda_out_of_memory(), fail_after=3)
    gpu.release = threading.Event()
    with qtbot.waitSignal(runner.failed, timeout=20_000) as failed:
        runner.start(tiny_model(), half_digit(), top_rows_known(3))
        qtbot.waitUntil(lambda: runner.done >= 3, timeout=5_000)
        runner.stop()
        gpu.release.set()
    assert failed.args[0].startswith("Completion failed: CUDA ran out of memory")
    assert gpu.devices == ["cuda"]


def test_a_late_started_of_an_old_run_is_not_taken_for_the_new_one(qtbot, runner,
                                                                   monkeypatch):
    emitted = threading.Event()

    class Watched(CompletionWorker):  # connected before its thread starts: no race to connect
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.started.connect(emitted.set, Qt.ConnectionType.DirectConnection)

    monkeypatch.setattr("gui.completion_runner.CompletionWorker", Watched)
    runner.start(tiny_model(), half_digit(), top_rows_known(0), pixels_per_second=5)
    assert emitted.wait(10)  # emitted in the worker's thread, still queued for the runner
    monkeypatch.undo()
    assert runner.shutdown()

    def slow_complete(*args, **kwargs):
        time.sleep(0.3)
        return complete(*args, **kwargs)

    monkeypatch.setattr(model_package, "complete", slow_complete)
    announced = []
    runner.started.connect(lambda: announced.append(runner.device_name))
    with qtbot.waitSignal(runner.finished, timeout=20_000):
        runner.start(tiny_model(), half_digit(), top_rows_known(4))
        qtbot.wait(100)  # the old run's `started` arrives while the new one is being built
        assert announced == []
    assert announced == ["CPU"]
