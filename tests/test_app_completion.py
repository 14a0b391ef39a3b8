"""Completing in the main window, end to end offscreen with a tiny model saved as if
bundled: Complete fills every unknown pixel and no known one, in one undo step; the window
signals the run's end once it has taken it in; Stop keeps what was sampled; closing the
window in any phase of a run ends it cleanly; candidates animate side by side and one can
be adopted; a hole with known pixels after it is completed hole-aware by default; and a GPU
that runs out of memory hands the completion to the CPU with a message."""

import threading
import time

import numpy as np
import pytest

import model as model_package
import model.rerank as rerank_module
from conftest import FailingGPU, cuda_out_of_memory, erase_bottom
from model import complete
from model.devices import DeviceChoice


@pytest.fixture
def window(tiny_window):
    """A shown window on the one tiny model bundled (8x8, 3 classes)."""
    return tiny_window


def test_complete_fills_every_unknown_pixel_and_changes_no_known_one(window, qtbot):
    erase_bottom(window)
    before = window.canvas.drawing.snapshot()
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
    values, known = window.canvas.drawing.snapshot()
    assert known.all()
    assert np.array_equal(values[:, before[1]], before[0][:, before[1]])
    # One undo step brings the erased state back exactly.
    window.undo_stack.undo()
    assert np.array_equal(window.canvas.drawing.known, before[1])
    # A grab of the window after a completion shows a non-blank canvas.
    image = window.canvas.grab().toImage()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
               for y in range(0, image.height(), 7)}
    assert len(colours) > 2


def test_the_window_signals_the_end_of_its_completion_once_it_has_taken_it_in(window,
                                                                               qtbot):
    """main.py's --screenshot grabs the window then; a failed run ends it too."""
    ended = []
    window.completion_ended.connect(lambda: ended.append(window.before_completion))
    erase_bottom(window)
    with qtbot.waitSignal(window.completion_ended, timeout=20000):
        window.complete()
    assert ended == [None] and window.canvas.drawing.known.all()


def test_stop_mid_run_keeps_what_was_sampled_and_is_undoable(window, qtbot):
    erase_bottom(window, rows=8)
    window.options.set_pixels_per_second(20)
    with qtbot.waitSignal(window.runner.finished, timeout=20000) as blocker:
        window.complete()
        qtbot.wait(400)
        window.stop()
    assert blocker.args == [True]
    known = window.canvas.drawing.known
    assert 0 < known.sum() < known.size
    window.undo_stack.undo()
    assert not window.canvas.drawing.known.any()


def held_up(monkeypatch, module, name: str, seconds: float = 0.3) -> threading.Event:
    """Make module.name wait `seconds` when called (in the worker); the event says it was."""
    entered = threading.Event()
    original = getattr(module, name)

    def slow(*args, **kwargs):
        entered.set()
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)
    return entered


# The phases of a completion in which the window is closed (the test says how it gets there).
CLOSING_PHASES = ("queued", "building", "sampling", "ranking", "ended", "finished")


@pytest.mark.parametrize("phase", CLOSING_PHASES)
def test_closing_the_window_in_any_phase_of_a_completion_ends_it_cleanly(
        window, qtbot, qtlog, monkeypatch, phase):
    runner = window.runner
    if phase == "ranking":
        central_hole(window)  # hole-aware (Auto): the candidates are ranked at the end
        entered = held_up(monkeypatch, rerank_module, "rank")
    else:
        erase_bottom(window, rows=8)
        entered = held_up(monkeypatch, model_package, "complete")
    window.options.set_pixels_per_second(10 if phase == "sampling" else 0)
    before_known = window.canvas.drawing.known.copy()
    window.complete()
    worker, worker_thread = runner.worker, runner.worker_thread
    if phase in ("building", "ranking"):
        assert entered.wait(10)
    elif phase == "sampling":
        qtbot.waitUntil(lambda: runner.done >= 2, timeout=10_000)
    elif phase == "ended":  # the worker is done; the runner has not taken its last samples
        deadline = time.monotonic() + 10
        while worker.outcome is None and time.monotonic() < deadline:
            time.sleep(0.01)  # no Qt events: nothing reaches the GUI meanwhile
        assert worker.outcome == ("finished", False)
    elif phase == "finished":
        qtbot.waitUntil(lambda: not runner.is_running(), timeout=10_000)

    began = time.monotonic()
    window.undo_stack.setClean()
    assert window.close()
    assert time.monotonic() - began < 3
    assert not runner.is_running() and worker_thread.isFinished()
    assert window.before_completion is None  # the run's end reached the window
    known = window.canvas.drawing.known
    assert (known >= before_known).all()
    if phase in ("ended", "finished"):
        assert known.all()  # every sample was kept, the last ones too
    qtbot.wait(50)  # late queued signals of the run arrive at a closed window
    assert not [record.message for record in qtlog.records if "QThread" in record.message]


def test_candidates_animate_side_by_side_and_one_can_be_adopted(window, qtbot):
    erase_bottom(window)
    window.options.candidates_box.setValue(4)
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
    assert window.gallery.isVisible()
    assert window.candidate_images.shape[0] == 4
    window.adopt_candidate(2)
    assert np.array_equal(window.canvas.drawing.values, window.candidate_images[2])


def central_hole(window):
    d = window.canvas.drawing
    d.values[0] = np.eye(8, dtype=np.uint8)
    d.known[2:5, 2:6] = False
    d.values[:, 2:5, 2:6] = 0


def test_a_hole_with_known_pixels_after_it_is_completed_hole_aware_by_default(window, qtbot):
    central_hole(window)
    window.options.rerank_box.setValue(6)
    before_values, before_known = window.canvas.drawing.snapshot()
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        window.complete()
    ranked = window.runner.ranked
    assert ranked is not None and len(ranked.candidates) == 6 and ranked.method == "resample"
    assert ranked.index == rerank_module.choose("resample", ranked.image_loglik,
                                                ranked.evidence_loglik, ranked.seed)
    # Auto: each candidate's class drawn from the posterior, shown in the strip.
    assert window.gallery.classes == ranked.class_labels == window.runner.class_labels
    values, known = window.canvas.drawing.snapshot()
    assert known.all()
    assert np.array_equal(values, ranked.image)  # the kept candidate is on the canvas
    assert np.array_equal(values[:, before_known], before_values[:, before_known])
    assert window.gallery.isVisibleTo(window) and window.gallery.chosen == ranked.index
    assert "hole-aware" in window.statusBar().currentMessage()


def test_hole_aware_completion_stays_off_without_known_pixels_after_the_hole(window, qtbot):
    erase_bottom(window)
    window.options.rerank_box.setValue(6)
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        window.complete()
    assert window.runner.ranked is None and window.run_candidates == 1


def test_hole_aware_completion_can_be_turned_off(window, qtbot):
    central_hole(window)
    window.options.hole_aware_box.setCurrentText("Off")
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        window.complete()
    assert window.runner.ranked is None and window.canvas.drawing.known.all()


def test_a_gpu_out_of_memory_completes_on_the_cpu_with_a_message(window, qtbot, monkeypatch):
    gpu = FailingGPU(monkeypatch, cuda_out_of_memory(), fail_after=5)
    gpu.release = threading.Event()
    window.device_choice = DeviceChoice("cuda", {"cpu": 0.05, "cuda": 0.01})  # the GPU won
    erase_bottom(window)
    before_values, before_known = window.canvas.drawing.snapshot()
    at_fallback = []
    window.runner.fell_back.connect(lambda _: at_fallback.append(
        (window.statusBar().currentMessage(), window.canvas.drawing.snapshot())))
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
        qtbot.waitUntil(lambda: window.canvas.drawing.known.sum() >= before_known.sum() + 5)
        gpu.release.set()
    assert gpu.devices == ["cuda", "cpu"]
    message, (values, known) = at_fallback[0]
    assert message == "CUDA ran out of memory; completing on the CPU instead."
    # The CUDA attempt's pixels are gone: the CPU starts from the picture as it was.
    assert np.array_equal(values, before_values) and np.array_equal(known, before_known)

    options = window.options
    cpu = complete(window.model, before_values, before_known, seed=window.runner.seed,
                   temperature=options.temperature, class_label=options.class_label,
                   sampler=options.sampler, device="cpu").run()
    assert np.array_equal(window.canvas.drawing.values, cpu[0])
    assert window.canvas.drawing.known.all()
    assert window.statusBar().currentMessage() == (
        f"Completed as a {window.runner.class_labels[0]}. On the CPU: CUDA ran out of memory.")
    assert window.device_label.text() == "CPU"
    window.undo_stack.undo()
    assert np.array_equal(window.canvas.drawing.known, before_known)
