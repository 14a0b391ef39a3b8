"""The benchmark command: one JSON object with the promised keys, on a tiny model."""

import json

import pytest

from conftest import tiny_model
from model import bench, save_model


def run_json(capsys, *argv) -> dict:
    assert bench.main([str(a) for a in argv] + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_samplers_are_compared_on_the_same_task(tmp_path, capsys):
    weights, _ = save_model(tiny_model(), tmp_path / "tiny")
    result = run_json(capsys, "--model", weights, "--candidates", 2, "--repeats", 2,
                      "--reference-repeats", 1)
    assert {"model", "height", "width", "candidates", "device", "reference_seconds",
            "fast_seconds", "speedup", "identical", "max_prob_diff"} <= result.keys()
    assert result["candidates"] == 2 and result["device"] == "cpu"
    assert result["identical"] is True and result["max_prob_diff"] < 1e-5
    # The printed seconds are rounded to 0.1 ms, so the ratio they give can differ from the
    # printed speedup (computed from the unrounded times) in the last digit.
    assert result["speedup"] == pytest.approx(
        result["reference_seconds"] / result["fast_seconds"], rel=0.02, abs=0.1)
    # N candidates are timed alternately with one candidate, in the same process.
    assert result["one_candidate_seconds"] > 0
    assert result["times_one"] == pytest.approx(
        result["fast_seconds"] / result["one_candidate_seconds"], rel=0.02, abs=0.01)


def test_one_candidate_is_not_compared_with_itself(tmp_path, capsys):
    weights, _ = save_model(tiny_model(), tmp_path / "tiny")
    result = run_json(capsys, "--model", weights, "--repeats", 1, "--reference-repeats", 1)
    assert result["candidates"] == 1 and "times_one" not in result


def test_hole_aware_timing_covers_sampling_and_scoring(tmp_path, capsys):
    weights, _ = save_model(tiny_model(height=8, width=8), tmp_path / "tiny")
    result = run_json(capsys, "--model", weights, "--hole-aware", 3, "--repeats", 2)
    assert result["candidates"] == 3 and result["unknown_pixels"] == 16  # a 4x4 hole
    assert 0 < result["sampling_seconds"] and 0 < result["scoring_seconds"]
    assert result["seconds"] >= max(result["sampling_seconds"], result["scoring_seconds"])
