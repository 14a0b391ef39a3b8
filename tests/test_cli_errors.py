"""`main.py complete` (model.cli) refuses what it cannot do before it writes anything, naming
the culprit: unreadable inputs (all of them at once), bad masks, damaged or missing model
files, bad arguments, a missing device, outputs that would collide or overwrite an input,
an output folder it cannot make (exit 2); a failed write exits 1. Its completions are in
test_cli_completions.py."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli_completions import H, W, pattern, run, write_input, write_mask
from test_image_io import png_header_only

import model.cli
from conftest import tiny_model
from model import save_model

pytestmark = pytest.mark.usefixtures("one_thread")


def truncated_png(path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("name, make, problem", [
    ("empty.png", lambda path: path.write_bytes(b""), "the file is empty"),
    ("cut.png", truncated_png, "truncated"),
    ("notes.png", lambda path: path.write_text("a text file\n"), "is not an image"),
    ("missing.png", lambda path: None, "does not exist"),
    ("huge.png", lambda path: path.write_bytes(png_header_only(20_000, 10_000)), "too large"),
])
def test_unreadable_inputs_exit_2_naming_the_file_and_write_nothing(tmp_path, tiny, capsys,
                                                                    name, make, problem):
    _, weights = tiny
    good = write_input(tmp_path / "good.png", pattern())
    bad = tmp_path / name
    make(bad)
    code, lines, err = run(capsys, good, bad, "--output", tmp_path / "out", "--erase-below", 3,
                           "--model", weights)
    assert code == 2
    assert lines == []
    assert str(bad) in err and problem in err
    assert not (tmp_path / "out").exists()


def test_every_bad_input_is_reported_at_once(tmp_path, tiny, capsys):
    _, weights = tiny
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_text("text")
    (tmp_path / "empty folder").mkdir()
    code, _, err = run(capsys, tmp_path / "a.png", tmp_path / "b.png", tmp_path / "empty folder",
                       "--output", tmp_path / "out", "--erase-below", 0, "--model", weights)
    assert code == 2
    assert len(err.splitlines()) == 3
    assert "a.png" in err and "b.png" in err and "empty folder is a folder with no images" in err


def empty_mask(folder: Path) -> Path:
    (folder / "mask.png").write_bytes(b"")
    return folder / "mask.png"


def empty_mask_folder(folder: Path) -> Path:
    (folder / "masks").mkdir()
    return folder / "masks"


@pytest.mark.parametrize("make_mask, problem", [
    (lambda d: write_mask(d / "mask.png", np.zeros((H + 1, W), bool)),
     "mask.png is 7x7 pixels; a mask must be 7x6 (the model's size).\n"),
    (empty_mask, "mask.png: the file is empty"),
    (lambda d: d / "no-mask.png", "no-mask.png: the file does not exist"),
    (empty_mask_folder, "masks holds no mask for"),
])
def test_bad_masks_exit_2_naming_the_mask(tmp_path, tiny, capsys, make_mask, problem):
    _, weights = tiny
    source = write_input(tmp_path / "digit.png", pattern())
    mask = make_mask(tmp_path)
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--mask", mask,
                           "--model", weights)
    assert code == 2 and lines == []
    assert problem in err
    assert not (tmp_path / "out").exists()


def replace_weights(tmp_path, weights, other):
    save_model(other, tmp_path / "other")
    (tmp_path / "other.safetensors").replace(weights)


def with_nan(tmp_path, weights):
    broken = tiny_model()
    with torch.no_grad():
        broken.head[1].weight[0, 0, 0, 0] = float("nan")
    replace_weights(tmp_path, weights, broken)


@pytest.mark.parametrize("damage, problem", [
    (lambda tmp_path, weights: weights.unlink(), "weights file not found"),
    (lambda tmp_path, weights: weights.write_bytes(weights.read_bytes()[:300]), "truncated"),
    (lambda tmp_path, weights: replace_weights(tmp_path, weights, tiny_model(hidden_channels=9)),
     "but the config needs"),
    (lambda tmp_path, weights: replace_weights(tmp_path, weights, tiny_model(layers=3)),
     "tensor names do not match the config"),
    (with_nan, "NaN or infinite"),
])
def test_damaged_model_files_exit_2_naming_the_file(tmp_path, tiny, capsys, damage, problem):
    _, weights = tiny
    damage(tmp_path, weights)
    source = write_input(tmp_path / "digit.png", pattern())
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                           "--model", weights)
    assert code == 2 and lines == []
    assert f"Cannot load the model: {weights}" in err and problem in err
    assert not (tmp_path / "out").exists()


def test_a_model_card_missing_is_named(tmp_path, tiny, capsys):
    _, weights = tiny
    weights.with_suffix(".json").unlink()
    source = write_input(tmp_path / "digit.png", pattern())
    code, _, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                       "--model", weights)
    assert code == 2 and "tiny.json: model config file not found" in err


def test_an_unknown_model_name_lists_the_bundled_ones(tmp_path, capsys):
    source = write_input(tmp_path / "digit.png", pattern())
    code, _, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                       "--model", "digits-nothing")
    assert code == 2
    assert "No model 'digits-nothing'" in err and "digits-ink" in err


@pytest.mark.parametrize("arguments, problem", [
    ([], "give --mask MASK or --erase-below ROW"),
    (["--erase-below", 3, "--mask", "m.png"], "not allowed with argument"),
    (["--erase-below", -1], "-1 is less than 0"),
    (["--erase-below", H + 1], f"--erase-below {H + 1} is below the model's {H} rows"),
    (["--erase-below", 3, "--candidates", 0], "0 is less than 1"),
    (["--erase-below", 3, "--candidates", "two"], "'two' is not a whole number"),
    (["--erase-below", 3, "--temperature", -1], "-1 is not a number of 0 or more"),
    (["--erase-below", 3, "--temperature", "nan"], "nan is not a number of 0 or more"),
    (["--erase-below", 3, "--seed", -5], "-5 is less than 0"),
    (["--erase-below", 3, "--class", 0], "--class 0 is not available: the model is not "
                                         "class-conditional"),
    (["--erase-below", 3, "--class", "seven"], "'seven' is neither a class number nor one "
                                               "of auto, likely, drawn, any"),
    (["--erase-below", 3, "--sampler", "slow"], "invalid choice: 'slow'"),
    (["--erase-below", 3, "--invert", "maybe"], "invalid choice: 'maybe'"),
    (["--erase-below", 3, "--device", "tpu"], "invalid choice: 'tpu'"),
    (["--erase-below", 3, "--rerank", 1], "1 is less than 2"),
    (["--erase-below", 3, "--rerank", 4, "--rerank-method", "vote"], "invalid choice: 'vote'"),
    (["--erase-below", 3, "--rerank", 4, "--candidates", 2], "does not combine"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, tiny, capsys, arguments, problem):
    _, weights = tiny
    source = write_input(tmp_path / "digit.png", pattern())
    code, lines, err = run(capsys, source, "--output", tmp_path / "out", "--model", weights,
                           *arguments)
    assert code == 2 and lines == []
    assert problem in err


def test_a_missing_output_option_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "digit.png", "--erase-below", 3)
    assert code == 2 and "the following arguments are required: --output" in err


def test_a_device_that_is_not_there_exits_2(tmp_path, tiny, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _, weights = tiny
    source = write_input(tmp_path / "digit.png", pattern())
    code, _, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                       "--model", weights, "--device", "cuda")
    assert code == 2 and "no CUDA device is available" in err


def test_inputs_whose_outputs_would_collide_are_refused(tmp_path, tiny, capsys):
    _, weights = tiny
    a = write_input(tmp_path / "one" / "digit.png", pattern())
    b = write_input(tmp_path / "two" / "digit.bmp", pattern())
    code, _, err = run(capsys, a, b, "--output", tmp_path / "out", "--erase-below", 3,
                       "--model", weights)
    assert code == 2 and "would both be written as digit.png" in err


def test_an_input_is_never_overwritten(tmp_path, tiny, capsys):
    _, weights = tiny
    source = write_input(tmp_path / "digit.png", pattern())
    before = source.read_bytes()
    code, _, err = run(capsys, source, "--output", tmp_path, "--erase-below", 3,
                       "--model", weights)
    assert code == 2 and "digit.png would be overwritten by a completion" in err
    assert source.read_bytes() == before


def test_an_output_folder_that_cannot_be_made_exits_2(tmp_path, tiny, capsys):
    _, weights = tiny
    source = write_input(tmp_path / "digit.png", pattern())
    (tmp_path / "taken").write_text("a file where the folder should go")
    code, _, err = run(capsys, source, "--output", tmp_path / "taken" / "out",
                       "--erase-below", 3, "--model", weights)
    assert code == 2 and "Cannot create the output folder" in err


def test_a_failed_write_exits_1_naming_the_file(tmp_path, tiny, capsys, monkeypatch):
    _, weights = tiny
    source = write_input(tmp_path / "digit.png", pattern())

    def disk_full(path, *_):
        raise OSError(f"Cannot save {path}: [Errno 28] No space left on device")
    monkeypatch.setattr(model.cli, "write_png", disk_full)
    code, _, err = run(capsys, source, "--output", tmp_path / "out", "--erase-below", 3,
                       "--model", weights)
    assert code == 1 and "digit.png: [Errno 28] No space left on device" in err
