"""The benchmark command: one JSON object with the promised keys, on a tiny model."""

import json
import threading

import pytest

from conftest import tiny_model
from model import save_model
from model.fast import kernels
from model.training import bench


def run_json(capsys, *argv) -> dict:
    assert bench.main([str(a) for a in argv] + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def ratio_of_rounded_times(ratio: float, a: float, b: float, ratio_rounding: float) -> bool:
    """Can `ratio` (rounded to `ratio_rounding`) be a / b for the unrounded times behind a
    and b, which are printed rounded to 0.1 ms?"""
    half = 0.00005
    low = (a - half) / (b + half) - ratio_rounding
    high = (a + half) / (b - half) + ratio_rounding
    return low <= ratio <= high


def test_the_samplers_are_compared_on_the_same_task(tmp_path, capsys):
    weights, _ = save_model(tiny_model(), tmp_path / "tiny")
    result = run_json(capsys, "--model", weights, "--candidates", 2, "--repeats", 2,
                      "--reference-repeats", 1)
    assert {"model", "height", "width", "candidates", "device", "reference_seconds",
            "fast_seconds", "speedup", "identical", "max_prob_diff"} <= result.keys()
    assert result["candidates"] == 2 and result["device"] == "cpu"
    assert result["identical"] is True and result["max_prob_diff"] < 1e-5
    # The printed seconds are rounded to 0.1 ms and the ratios are computed from the unrounded
    # times: each ratio must lie within what the rounded times allow (a tiny model's few
    # milliseconds make that several per cent).
    assert ratio_of_rounded_times(result["speedup"], result["reference_seconds"],
                                  result["fast_seconds"], 0.05), result
    # N candidates are timed alternately with one candidate, in the same process.
    assert result["one_candidate_seconds"] > 0
    assert ratio_of_rounded_times(result["times_one"], result["fast_seconds"],
                                  result["one_candidate_seconds"], 0.005), result


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


def test_posterior_timing_covers_the_whole_image_and_its_top_half(tmp_path, capsys,
                                                                   monkeypatch):
    """Exact, and as the Looks-like panel computes it (here never compiled: exact too)."""
    monkeypatch.setattr("model.posterior_scorer.WORTH_COMPILING_S", float("inf"))
    weights, _ = save_model(tiny_model(height=8, width=8, num_classes=3), tmp_path / "tiny")
    result = run_json(capsys, "--model", weights, "--posterior", "--repeats", 2)
    assert result["classes"] == 3
    assert 0 < result["whole_image_seconds"] and 0 < result["top_half_seconds"]
    assert 0 < result["panel_whole_image_seconds"] and 0 < result["panel_top_half_seconds"]
    assert result["panel_engine"] == "exact fp32"
    assert "nothing worth compiling" in result["panel_reason"]
    unconditional, _ = save_model(tiny_model(height=8, width=8), tmp_path / "plain")
    with pytest.raises(SystemExit, match="needs a class-conditional model"):
        bench.main(["--model", str(unconditional), "--posterior"])


@pytest.mark.parametrize("option", ["--repeats", "--reference-repeats", "--candidates",
                                    "--hole-aware"])
def test_a_count_below_one_is_refused_with_a_message(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([option, "0"])
    assert exit_info.value.code == 2
    assert f"argument {option}: 0 is not a positive number." in capsys.readouterr().err


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_core_scaling_compares_the_cores_at_once_with_one(tmp_path, capsys, monkeypatch):
    from model.fast import threads as fast_threads

    monkeypatch.setattr(fast_threads, "cores", lambda: 3)
    threads = set()
    kernel = kernels.vertical_share
    monkeypatch.setattr(kernels, "vertical_share", lambda *args: threads.add(
        threading.current_thread().name) or kernel(*args))
    # Class-conditional, as the shipped model is: the candidates must not draw classes.
    weights, _ = save_model(tiny_model(num_classes=3), tmp_path / "tiny")
    result = run_json(capsys, "--model", weights, "--core-scaling", "--repeats", 2)
    # Three rounds of: this thread alone, then three threads at once.
    assert result["cores"] == 3 and threading.current_thread().name in threads
    assert len(threads) == 1 + 3 * 3
    assert ratio_of_rounded_times(result["scaling"] / 3, result["one_thread_seconds"],
                                  result["all_threads_seconds"], 0.05), result


def test_core_scaling_is_for_the_gated_models_kernels(tmp_path, capsys):
    weights, _ = save_model(tiny_model(architecture="pixelcnn"), tmp_path / "tiny")
    with pytest.raises(SystemExit, match="gated model's CPU kernels"):
        bench.main(["--model", str(weights), "--core-scaling"])
