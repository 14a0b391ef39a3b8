"""pixelcnn-studio train-all (model/training/train_all.py): the one-GPU plan that trains
every bundled model, kept working by running it here as a CPU dry run."""

import numpy as np
import pytest
import torch
from test_emoji import SUBSET
from test_train import blob_images

from conftest import write_mnist
from model import read_card
from model.training import emoji, train_all


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    return write_mnist(tmp_path_factory.mktemp("mnist"), blob_images(60, rng),
                       blob_images(12, rng))


@pytest.fixture(scope="module")
def emoji_cache(tmp_path_factory):
    """Renders of a few glyphs at the plan's size, made here so the training processes
    read them instead of rendering the whole font."""
    directory = tmp_path_factory.mktemp("emoji-cache")
    patch = pytest.MonkeyPatch()
    patch.setattr(emoji, "SEARCHED", SUBSET)
    try:
        emoji.load_emoji("train", emoji.IMAGE_SIZE, emoji.LEVELS, directory)
    finally:
        patch.undo()
    return directory


def test_the_plan_fits_nine_minutes_of_one_gpu():
    # 1.5 minutes are left for four processes to start, compile and score their test sets.
    assert sum(job.minutes for job in train_all.PLAN) <= 7.5
    names = {job.name for job in train_all.PLAN}
    assert {"digits-ink", "digits-gray", "emoji-color", "digits-bernoulli"} == names


@pytest.mark.slow
def test_dry_run_trains_every_model_of_the_plan_and_tabulates_them(
        mnist_dir, emoji_cache, tmp_path, capsys):
    code = train_all.main(["--data", str(mnist_dir), "--output", str(tmp_path),
                           "--emoji-cache", str(emoji_cache), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0, out
    for job in train_all.PLAN:
        card = read_card(tmp_path / job.name)
        assert card["name"] == job.name and card["steps"] >= 1
        assert " ".join(job.options) in card["command"]
        assert f"{card['test_nll_nats']:.2f}" in next(
            line for line in out.splitlines() if line.startswith(job.name))
    assert read_card(tmp_path / "digits-bernoulli")["config"].architecture == "pixelcnn"
    assert read_card(tmp_path / "emoji-color")["config"].channels == 3
    # Tiny dry-run models are no match for the shipped ones, and the table says so.
    assert "not better" in out or "other test images" in out


def test_without_a_gpu_it_points_to_the_dry_run(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train_all.main(["--data", str(mnist_dir), "--output", str(tmp_path)]) == 2
    assert "--dry-run" in capsys.readouterr().err
