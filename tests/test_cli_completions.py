"""`main.py complete` (model.cli) completes pictures as the sampling library does: below a
row or in a mask's white pixels (a mask of the input's size is fitted with it, folders of
inputs and masks pair by name), every known pixel kept, with candidates, reranking, a class
(auto by default, the posterior in its JSON), either sampler; unusual but valid pictures and
dark ink on a light page are completed in the model's convention, and the real command runs
the bundled model without importing Qt. Its errors are in test_cli_errors.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_image_io import solid_png

import model.cli
from conftest import tiny_model
from model import complete, save_model
from model.devices import available_devices
from model.images import load_image
from model.posterior import class_posterior
from model.rerank import rerank

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
H, W = 6, 7  # the tiny model's size


def pattern(seed: int = 0) -> np.ndarray:
    """(H, W) bits of light ink on a dark border (so it is never inverted)."""
    bits = np.zeros((H, W), np.uint8)
    bits[1:-1, 1:-1] = np.random.default_rng(seed).integers(0, 2, (H - 2, W - 2))
    return bits


def write_input(path: Path, bits: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(bits.astype(np.uint8) * 255).save(path)
    return path


def write_mask(path: Path, to_complete: np.ndarray) -> Path:
    return write_input(path, to_complete)


def read_levels(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        assert picture.size == (W, H)
    return load_image(path, H, W, 1, 2, invert="no")[0]


def run(capsys, *argv):
    """Exit code, stdout lines and stderr of `main.py complete argv...`, in this process."""
    code = model.cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def library_completion(network, bits, to_complete, **options) -> np.ndarray:
    """What the sampling library gives for the same task: (candidates, H, W)."""
    return complete(network, bits[None], ~to_complete, **options).run()[:, 0]


def test_erase_below_keeps_the_rows_above_and_samples_like_the_library(tmp_path, tiny, capsys):
    network, weights = tiny
    bits = pattern()
    source = write_input(tmp_path / "in" / "digit.png", bits)
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                           "--model", weights, "--candidates", 3, "--seed", 5)
    assert code == 0, err
    expected = [str(tmp_path / "out" / f"digit-{k}.png") for k in (1, 2, 3)]
    assert lines == expected
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [Path(p).name for p in expected]
    to_complete = np.zeros((H, W), bool)
    to_complete[3:] = True
    wanted = library_completion(network, bits, to_complete, candidates=3, seed=5)
    for k, path in enumerate(expected):
        completed = read_levels(Path(path))
        np.testing.assert_array_equal(completed[:3], bits[:3])  # known rows untouched
        np.testing.assert_array_equal(completed, wanted[k])


def test_a_mask_completes_exactly_its_white_pixels(tmp_path, tiny, capsys):
    network, weights = tiny
    bits = pattern(1)
    to_complete = np.random.default_rng(2).random((H, W)) < 0.4  # scattered, not a suffix
    source = write_input(tmp_path / "digit.png", bits)
    mask = write_mask(tmp_path / "masks" / "holes.png", to_complete)
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--mask", mask,
                           "--model", weights, "--seed", 9, "--temperature", 0.5)
    assert code == 0, err
    assert lines == [str(tmp_path / "out" / "digit.png")]
    completed = read_levels(tmp_path / "out" / "digit.png")
    np.testing.assert_array_equal(completed[~to_complete], bits[~to_complete])
    wanted = library_completion(network, bits, to_complete, seed=9, temperature=0.5)[0]
    np.testing.assert_array_equal(completed, wanted)


@pytest.mark.parametrize("method", ["best", "resample"])
def test_rerank_writes_the_candidate_the_library_keeps(tmp_path, tiny, capsys, method):
    network, weights = tiny
    bits = pattern(3)
    to_complete = np.zeros((H, W), bool)
    to_complete[2:4, 2:5] = True  # a hole with known pixels after it
    source = write_input(tmp_path / "digit.png", bits)
    mask = write_mask(tmp_path / "masks" / "hole.png", to_complete)
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--mask", mask,
                           "--model", weights, "--seed", 4, "--rerank", 6,
                           "--rerank-method", method, "--json")
    assert code == 0, err
    summary = json.loads("\n".join(lines))
    assert summary["files"] == [str(tmp_path / "out" / "digit.png")]
    ranked = rerank(network, bits[None], ~to_complete, candidates=6, method=method, seed=4)
    assert summary["completions"][0]["rerank"]["chosen"] == ranked.index + 1
    completed = read_levels(tmp_path / "out" / "digit.png")
    np.testing.assert_array_equal(completed, ranked.image[0])
    np.testing.assert_array_equal(completed[~to_complete], bits[~to_complete])


def test_a_mask_with_nothing_to_complete_writes_the_input_unchanged(tmp_path, tiny, capsys):
    _, weights = tiny
    bits = pattern(3)
    source = write_input(tmp_path / "digit.png", bits)
    mask = write_mask(tmp_path / "mask.png", np.zeros((H, W), bool))
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--mask", mask,
                           "--model", weights, "--json")
    assert code == 0, err
    assert json.loads("\n".join(lines))["pixels_completed"] == 0
    with Image.open(source) as a, Image.open(tmp_path / "out" / "digit.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_mask_with_everything_to_complete_samples_every_pixel(tmp_path, tiny, capsys):
    network, weights = tiny
    bits = np.ones((H, W), np.uint8)
    bits[0] = 0  # a dark top row keeps the mostly light input from being inverted
    source = write_input(tmp_path / "digit.png", bits)
    mask = write_mask(tmp_path / "mask.png", np.ones((H, W), bool))
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--mask", mask,
                           "--model", weights, "--seed", 1, "--candidates", 2, "--json")
    assert code == 0, err
    summary = json.loads("\n".join(lines))
    assert summary["pixels_completed"] == 2 * H * W
    wanted = library_completion(network, np.zeros((H, W), np.uint8), np.ones((H, W), bool),
                                seed=1, candidates=2)
    for k in (0, 1):
        np.testing.assert_array_equal(read_levels(tmp_path / "out" / f"digit-{k + 1}.png"),
                                      wanted[k])


def test_folders_of_inputs_and_masks_pair_them_by_name(tmp_path, tiny, capsys):
    _, weights = tiny
    first, second = pattern(4), pattern(5)
    write_input(tmp_path / "in" / "a.png", first)
    write_input(tmp_path / "in" / "b.bmp", second)
    (tmp_path / "in" / "notes.txt").write_text("not an image, and not picked up")
    write_mask(tmp_path / "masks" / "a.png", np.zeros((H, W), bool))  # nothing in a
    bottom = np.zeros((H, W), bool)
    bottom[4:] = True
    write_mask(tmp_path / "masks" / "b.png", bottom)  # b.bmp's mask, by its stem
    code, lines, err = run(capsys, tmp_path / "in", "--output", tmp_path / "out",
                           "--mask", tmp_path / "masks", "--model", weights, "--json")
    assert code == 0, err
    summary = json.loads("\n".join(lines))
    out = tmp_path / "out"
    assert summary["files"] == [str(out / "a.png"), str(out / "b.png")]
    assert [c["pixels_completed"] for c in summary["completions"]] == [0, 2 * W]
    assert summary["model"] == str(weights) and summary["sampler"] == "fast"
    assert summary["device"] == "cpu" and summary["seconds"] > 0
    if available_devices() == ["cpu"]:
        assert summary["device_reason"] == "the only device"
    else:
        assert summary["device_reason"].startswith("fastest measured (")
    np.testing.assert_array_equal(read_levels(out / "a.png"), first)
    np.testing.assert_array_equal(read_levels(out / "b.png")[:4], second[:4])


def test_a_mask_of_the_inputs_size_is_fitted_with_it(tmp_path, tiny, capsys):
    _, weights = tiny
    bits = pattern(6)
    big = bits.repeat(2, axis=0).repeat(2, axis=1)  # 14x12: fits the 7x6 model exactly
    source = write_input(tmp_path / "big.png", big)
    to_complete = np.zeros((2 * H, 2 * W), bool)
    to_complete[2 * 4:] = True  # model rows 4 and 5
    mask = write_mask(tmp_path / "mask.png", to_complete)
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--mask", mask,
                           "--model", weights, "--json")
    assert code == 0, err
    assert json.loads("\n".join(lines))["pixels_completed"] == 2 * W
    np.testing.assert_array_equal(read_levels(tmp_path / "out" / "big.png")[:4], bits[:4])


def test_the_class_and_the_reference_sampler_are_passed_on(tmp_path, capsys):
    network = tiny_model(num_classes=3)
    weights, _ = save_model(network, tmp_path / "classy")
    source = write_input(tmp_path / "digit.png", pattern(7))
    outputs = {}
    for sampler in ("fast", "reference"):
        code, _, err = run(capsys, source, "--output", tmp_path / sampler, "--erase-below", 2,
                           "--model", weights, "--class", 2, "--seed", 3, "--sampler", sampler)
        assert code == 0, err
        outputs[sampler] = read_levels(tmp_path / sampler / "digit.png")
    to_complete = np.zeros((H, W), bool)
    to_complete[2:] = True
    wanted = library_completion(network, pattern(7), to_complete, seed=3, class_label=2)[0]
    np.testing.assert_array_equal(outputs["fast"], wanted)
    np.testing.assert_array_equal(outputs["reference"], wanted)  # the samplers agree


def test_the_class_is_auto_by_default_and_json_reports_the_posterior(tmp_path, capsys):
    network = tiny_model(num_classes=3)
    weights, _ = save_model(network, tmp_path / "classy")
    source = write_input(tmp_path / "digit.png", pattern(7))
    to_complete = np.zeros((H, W), bool)
    to_complete[3:] = True
    known_values = pattern(7)
    posterior = class_posterior(network, known_values, ~to_complete)
    for arguments, policy, used in (
            ([], "likely", [int(np.argmax(posterior))]),
            (["--class", "any"], "none", [None]),
            (["--class", "1"], "fixed", [1]),
            (["--class", "drawn", "--candidates", "3"], "drawn", None)):
        code, lines, err = run(capsys, source, "--output", tmp_path / policy, "--erase-below", 3,
                               "--model", weights, "--seed", 5, "--json", *arguments)
        assert code == 0, err
        summary = json.loads("\n".join(lines))["completions"][0]
        classes = summary["classes"]
        assert classes["policy"] == policy
        if used is not None:
            assert classes["used"] == used
        else:  # each candidate's class drawn from the posterior, as the library draws them
            drawn = complete(network, known_values, ~to_complete, candidates=3, seed=5,
                             class_label="drawn")
            assert classes["used"] == list(drawn.task.class_labels)
        if policy in ("likely", "drawn"):
            np.testing.assert_allclose(classes["posterior"], posterior, atol=1e-4)
        else:
            assert "posterior" not in classes
    wanted = library_completion(network, known_values, to_complete, seed=5,
                                class_label=int(np.argmax(posterior)))[0]
    np.testing.assert_array_equal(read_levels(tmp_path / "likely" / "digit.png"), wanted)


def test_auto_on_a_model_without_classes_completes_without_one(tmp_path, tiny, capsys):
    _, weights = tiny
    source = write_input(tmp_path / "digit.png", pattern())
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                           "--model", weights, "--class", "auto", "--json")
    assert code == 0, err
    classes = json.loads("\n".join(lines))["completions"][0]["classes"]
    assert classes == {"policy": "none", "used": [None],
                       "note": "the model has no classes: completed without one"}


def test_dark_on_light_inputs_come_out_in_the_models_convention(tmp_path, tiny, capsys):
    _, weights = tiny
    bits = pattern(8)
    source = write_input(tmp_path / "scan.png", 1 - bits)  # dark ink on a light page
    for invert, expected in (("auto", bits), ("yes", bits), ("no", 1 - bits)):
        code, _, err = run(capsys, source, "--output", tmp_path / invert, "--erase-below", H,
                           "--model", weights, "--invert", invert)
        assert code == 0, err
        np.testing.assert_array_equal(read_levels(tmp_path / invert / "scan.png"), expected)


def make_animated_gif(path):
    frames = [Image.fromarray(pattern(9) * 255), Image.fromarray(np.full((H, W), 255, np.uint8))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


ODD_PICTURES = {
    "dot.png": lambda path: Image.new("L", (1, 1), 0).save(path),
    "deep.png": lambda path: Image.fromarray(pattern(9).astype(np.uint16) * 65535).save(path),
    "palette.png": lambda path: Image.fromarray(pattern(9) * 255).convert("P").save(path),
    "alpha.png": lambda path: Image.fromarray(
        np.dstack([np.full((H, W, 3), 255, np.uint8), pattern(9) * 255]), "RGBA").save(path),
    "animated.gif": make_animated_gif,
    "poster.png": lambda path: path.write_bytes(solid_png(10_000, 10_000, 0)),
}


@pytest.mark.parametrize("name", ODD_PICTURES)
def test_unusual_but_valid_pictures_are_completed(tmp_path, tiny, capsys, name):
    _, weights = tiny
    source = tmp_path / name
    ODD_PICTURES[name](source)
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                           "--model", weights)
    assert code == 0, err
    out = tmp_path / "out" / f"{source.stem}.png"
    assert lines == [str(out)]
    known = load_image(source, H, W, 1, 2)[0][:3]
    np.testing.assert_array_equal(read_levels(out)[:3], known)
    if name not in ("dot.png", "poster.png"):  # every picture but the blank ones shows ink
        np.testing.assert_array_equal(known, pattern(9)[:3])


@pytest.mark.slow
def test_main_py_complete_runs_the_bundled_model_without_importing_qt(tmp_path):
    """The real command, in a fresh interpreter: `-X importtime` lists every module loaded."""
    source = ROOT / "resources" / "samples" / "digit-3.png"
    out = tmp_path / "out"
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "main.py"), "complete", str(source),
         "--output", str(out), "--erase-below", "14", "--seed", "0", "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [str(out / "digit-3.png")]
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "model.io" in imported and "torch" in imported  # the model, loaded
    assert not [name for name in imported if name.startswith("PySide6")]
    completed = load_image(out / "digit-3.png", 28, 28, 1, 2, invert="no")[0]
    np.testing.assert_array_equal(completed[:14], load_image(source, 28, 28, 1, 2)[0][:14])
