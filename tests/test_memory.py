"""Requests whose memory the machine does not have are refused up front, naming the limit."""

import numpy as np
import pytest

import model.cli
from conftest import tiny_model
from model import build_model
from model.fast.stepper import GatedStepper
from model.fast.weights import prepared_weights
from model.memory import MemoryLimitError, bytes_per_candidate, check_candidates_fit
from model.registry import SHIPPED_CONFIG
from model.task import SamplingTask


def test_the_estimate_covers_the_fast_samplers_state_without_inflating_it():
    model = build_model(SHIPPED_CONFIG).eval()
    image = np.zeros((1, 28, 28), np.uint8)
    task = SamplingTask(model, image, np.zeros((28, 28), bool), candidates=4, seed=0,
                        class_label=None)
    stepper = GatedStepper(prepared_weights(model, "numpy", "cpu"), task, share=False)
    state = sum(a.nbytes for a in (stepper.vin_all, stepper.link_all, stepper.hin_all,
                                   stepper.gated)) / 4
    own = (task.uniforms.nbytes + task.images.nbytes) / 4
    estimate = bytes_per_candidate(SHIPPED_CONFIG)
    assert state + own <= estimate <= 2 * (state + own)


def test_a_request_within_the_limit_passes_and_one_beyond_names_the_limit():
    each = bytes_per_candidate(SHIPPED_CONFIG)
    available = 100 * each
    check_candidates_fit(SHIPPED_CONFIG, 70, available=available)
    with pytest.raises(MemoryLimitError, match="enough for at most 70"):
        check_candidates_fit(SHIPPED_CONFIG, 71, available=available)


def test_a_sampling_task_refuses_before_allocating(monkeypatch):
    monkeypatch.setattr("model.memory.available_bytes", lambda: 50 * 2**20)
    with pytest.raises(MemoryLimitError, match="GiB available"):
        SamplingTask(tiny_model(), np.zeros((1, 6, 7), np.uint8), candidates=10**6)


def test_the_command_line_refuses_a_hundred_thousand_candidates_with_exit_2(tmp_path, capsys):
    code = model.cli.main(["resources/samples/digit-3.png", "--erase-below", "14",
                     "--candidates", "100000", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --candidates: 100000 candidates need about")
    assert "enough for at most" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
