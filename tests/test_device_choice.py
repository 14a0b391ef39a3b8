"""The app completes on the device measured fastest for the model, measures each model once
per machine, and its status bar says which device and why."""

from PySide6.QtCore import QSettings

import model.devices as devices
from conftest import bundle, close, tiny_model
from gui.main_window import MainWindow
from model.devices import DeviceChoice


def never_measured(model):
    raise AssertionError("a single device was measured")


def test_with_the_cpu_alone_nothing_is_measured_and_the_status_bar_says_so(qtbot, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu"])
    monkeypatch.setattr(devices, "choose", never_measured)
    bundle(tmp_path, monkeypatch, tiny=tiny_model(height=8, width=8))
    w = MainWindow("tiny")
    qtbot.addWidget(w)
    assert w.device_label.text() == "CPU · the only device"
    w.canvas.drawing.known[4:] = False
    with qtbot.waitSignal(w.runner.finished, timeout=30000):
        w.complete()
    assert w.device_label.text() == "CPU · the only device"
    close(w)


def test_with_a_gpu_the_first_window_measures_and_the_next_remembers(qtbot, tmp_path,
                                                                      monkeypatch):
    measured = []

    def choose(model):
        measured.append(model)
        return DeviceChoice("cpu", {"cpu": 0.05, "cuda": 2.0})

    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "cuda"])
    monkeypatch.setattr(devices, "machine_signature", lambda devices=None: "cpu|cuda:Test GPU")
    monkeypatch.setattr(devices, "choose", choose)
    bundle(tmp_path, monkeypatch, tiny=tiny_model(height=8, width=8))
    shown = "CPU · fastest measured (CPU 0.05 ms/pixel, CUDA 2 ms/pixel)"

    first = MainWindow("tiny")
    qtbot.addWidget(first)
    assert first.device_label.text() == "Measuring devices…"
    qtbot.waitUntil(lambda: first.device_label.text() == shown, timeout=30000)
    assert measured == [first.model]
    saved = [key for key in QSettings().allKeys() if key.startswith("devices/tiny-")]
    assert len(saved) == 1
    assert DeviceChoice.from_json(QSettings().value(saved[0]), ["cpu", "cuda"]) == \
        first.device_choice
    close(first)

    second = MainWindow("tiny")  # its own model object, loaded anew
    qtbot.addWidget(second)
    assert second.model is not first.model
    assert second.device_label.text() == shown  # from the settings, at once
    assert devices.choice_for(second.model) == first.device_choice
    assert len(measured) == 1
    close(second)

    # Other devices (another GPU, or the settings on another machine): measured again.
    monkeypatch.setattr(devices, "machine_signature", lambda devices=None: "cpu|cuda:Other")
    third = MainWindow("tiny")
    qtbot.addWidget(third)
    assert third.device_label.text() == "Measuring devices…"
    qtbot.waitUntil(lambda: len(measured) == 2, timeout=30000)
    close(third)
