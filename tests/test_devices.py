""""auto" completes on the device measured fastest for the model, measured once."""

import math

import numpy as np
import pytest
import torch

import model.devices as devices
from conftest import tiny_model
from model import complete
from model.devices import DeviceChoice, choose, completion_device, remember, seconds_per_pixel


def timings(**seconds):
    calls = []

    def measure(model, device):
        calls.append(device)
        if isinstance(seconds[device], Exception):
            raise seconds[device]
        return seconds[device]

    return measure, calls


def test_the_fastest_measured_device_is_chosen_and_the_reason_gives_the_numbers():
    measure, calls = timings(cpu=40e-6, cuda=2e-3)
    choice = choose(tiny_model(), ["cpu", "cuda"], measure)
    assert choice.device == "cpu" and calls == ["cpu", "cuda"]
    assert choice.reason() == "fastest measured (CPU 0.04 ms/pixel, CUDA 2 ms/pixel)"

    measure, _ = timings(cpu=40e-6, cuda=5e-6)
    assert choose(tiny_model(), ["cpu", "cuda"], measure).device == "cuda"


def test_a_device_that_fails_to_measure_is_not_chosen():
    measure, _ = timings(cpu=1e-3, cuda=RuntimeError("CUDA error: no kernel image"))
    choice = choose(tiny_model(), ["cpu", "cuda"], measure)
    assert choice.device == "cpu"
    assert choice.reason() == "fastest measured (CPU 1 ms/pixel, CUDA failed)"


def test_with_one_device_nothing_is_measured():
    measure, calls = timings(cpu=1.0)
    choice = choose(tiny_model(), ["cpu"], measure)
    assert choice == DeviceChoice("cpu") and calls == []
    assert choice.reason() == "the only device"


def test_a_choice_survives_its_round_trip_through_the_settings():
    choice = DeviceChoice("cuda", {"cpu": 0.05, "cuda": math.inf})
    assert DeviceChoice.from_json(choice.to_json(), ["cpu", "cuda"]) == choice
    # A device no longer there, or text that is not a choice, is measured again.
    assert DeviceChoice.from_json(choice.to_json(), ["cpu"]) is None
    for text in ("", "[1]", '{"device": "cpu"}', "{not json"):
        assert DeviceChoice.from_json(text, ["cpu"]) is None


def test_auto_uses_the_remembered_choice_and_measures_a_model_only_once(monkeypatch):
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "mps"])
    measure, calls = timings(cpu=1e-5, mps=1e-3)
    monkeypatch.setattr(devices, "choose",
                        lambda model: choose(model, ["cpu", "mps"], measure))
    net = tiny_model()
    assert completion_device(net).type == "cpu"
    assert completion_device(net, "auto").type == "cpu"
    assert calls == ["cpu", "mps"]  # measured once, then remembered
    other = tiny_model()
    remember(other, DeviceChoice("cpu", {"cpu": 1.0, "mps": 2.0}))
    assert completion_device(other).type == "cpu" and calls == ["cpu", "mps"]


def test_a_device_asked_for_is_used_or_refused():
    net = tiny_model()
    assert completion_device(net, "cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            completion_device(net, "cuda")


def test_measuring_completes_real_pixels_and_leaves_the_model_where_it_was():
    net = tiny_model(height=8, width=8)
    seconds = seconds_per_pixel(net, "cpu", pixels=20)
    assert 0 < seconds < 1
    assert next(net.parameters()).device.type == "cpu"


def test_complete_runs_on_the_chosen_device(monkeypatch):
    net = tiny_model(height=6, width=6)
    remember(net, DeviceChoice("cpu", {"cpu": 1.0, "cuda": 9.0}))
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "cuda"])
    image = np.zeros((1, 6, 6), np.uint8)
    known = np.zeros((6, 6), bool)
    assert complete(net, image, known, seed=1).device.type == "cpu"
