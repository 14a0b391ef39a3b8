"""Training and evaluation (model/training/train.py, evaluate.py) end to end, on tiny
synthetic MNIST files and a tiny model."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import needs_a_cpp_compiler, write_mnist
from model import load_model, read_card, save_model
from model.training import evaluate, train

NUM_TRAIN = 60  # -> 50 training and 10 validation images
NUM_TEST = 12
TINY_MODEL = ["--layers", "1", "--hidden-channels", "4", "--first-kernel-size", "3",
              "--kernel-size", "3", "--batch-size", "16"]  # 50 images: 4 steps per epoch
REQUIRED_CARD_KEYS = {
    "config", "name", "data_mode", "levels", "epochs", "steps", "wall_minutes", "hardware",
    "valid_nll_nats", "test_nll_nats", "test_bits_per_dim", "learning_curve", "command",
    "trained_at",
}
CURVE_KEYS = {"step", "epoch", "minutes", "train_nats", "valid_nats"}




def blob_images(count, rng):
    """Bright blobs on black, sized and placed at random: digit-like strokes for a PixelCNN."""
    rows, cols = np.mgrid[0:28, 0:28]
    centres = rng.uniform(8, 20, size=(count, 2))
    radii = rng.uniform(3, 7, size=count)
    distance = np.hypot(rows - centres[:, 0, None, None], cols - centres[:, 1, None, None])
    return np.clip(255 * (1.5 - distance / radii[:, None, None]), 0, 255).astype(np.uint8)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    return write_mnist(tmp_path_factory.mktemp("mnist"), blob_images(NUM_TRAIN, rng),
                       blob_images(NUM_TEST, rng))


def train_args(mnist_dir, out, name="tiny", *extra):
    return ["--data", str(mnist_dir), "--name", name, "--output-dir", str(out),
            "--checkpoint-dir", str(out / f"{name}-checkpoints"), "--device", "cpu",
            "--compile", "off", "--precision", "fp32", *TINY_MODEL, *extra]


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """One epoch of training, shared by the tests that only read its results."""
    out = tmp_path_factory.mktemp("trained")
    assert train.main(train_args(mnist_dir, out, "tiny", "--epochs", "1")) == 0
    return out


def test_training_writes_a_loadable_model_and_a_complete_card(trained):
    card = read_card(trained / "tiny")
    assert REQUIRED_CARD_KEYS <= set(card)
    assert card["name"] == "tiny" and card["data_mode"] == "threshold" and card["levels"] == 2
    assert card["steps"] == 4 and card["epochs"] == pytest.approx(1.0)
    for key in ("valid_nll_nats", "test_nll_nats", "test_bits_per_dim", "wall_minutes"):
        assert math.isfinite(card[key]) and card[key] >= 0, key
    assert card["test_bits_per_dim"] == pytest.approx(card["test_nll_nats"] / (784 * math.log(2)))
    assert card["command"].startswith("pixelcnn-studio train --data ")
    assert {"processor", "torch", "device", "threads"} <= set(card["hardware"])
    assert [set(point) for point in card["learning_curve"]] == [CURVE_KEYS]
    model = load_model(trained / "tiny")
    assert model.config.layers == 1 and model.config.num_classes == 10


def test_evaluate_json_matches_the_cards_test_nll(trained, mnist_dir, capsys):
    capsys.readouterr()
    code = evaluate.main(["--model", str(trained / "tiny"), "--data", str(mnist_dir), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"model", "split", "images", "nll_nats", "bits_per_dim",
                           "compiled", "seconds"}
    assert result["split"] == "test" and result["images"] == NUM_TEST
    assert not result["compiled"]
    assert result["nll_nats"] == pytest.approx(read_card(trained / "tiny")["test_nll_nats"],
                                               rel=1e-6)


@needs_a_cpp_compiler
def test_evaluate_compiled_scores_as_eager_does(trained, mnist_dir, capsys):
    """12 test images in batches of 5: two full batches and a padded one, through one
    compiled shape."""
    base = ["--model", str(trained / "tiny"), "--data", str(mnist_dir), "--json",
            "--batch-size", "5"]
    results = []
    for extra in ([], ["--compile"]):
        capsys.readouterr()
        assert evaluate.main([*base, *extra]) == 0
        results.append(json.loads(capsys.readouterr().out))
    eager, compiled = results
    assert compiled["compiled"] and compiled["images"] == NUM_TEST == 12
    assert compiled["nll_nats"] == pytest.approx(eager["nll_nats"], rel=1e-5)


def test_evaluate_compile_without_a_compiler_says_so(trained, mnist_dir, capsys, monkeypatch):
    def no_compiler(model, **options):
        def fails(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")
        return fails
    monkeypatch.setattr(evaluate.torch, "compile", no_compiler)
    code = evaluate.main(["--model", str(trained / "tiny"), "--data", str(mnist_dir),
                          "--compile"])
    assert code == 2
    assert ("error: --compile: torch.compile cannot build here (RuntimeError: InvalidCxxCompiler:"
            " No working C++ compiler found); score without it.") in capsys.readouterr().err


def test_evaluate_with_labels_scores_differently_from_without(trained, mnist_dir, capsys):
    capsys.readouterr()
    base = ["--model", str(trained / "tiny"), "--data", str(mnist_dir), "--split", "valid"]
    assert evaluate.main(base) == 0
    assert "nats per image" in capsys.readouterr().out
    assert evaluate.main([*base, "--with-labels", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == NUM_TRAIN // 6


def test_resume_continues_the_run_and_keeps_its_learning_curve(trained, mnist_dir, tmp_path):
    # Copy the shared run's checkpoint so this test does not change what others read.
    checkpoint = trained / "tiny-checkpoints" / "last.pt"
    (tmp_path / "tiny-checkpoints").mkdir()
    (tmp_path / "tiny-checkpoints" / "last.pt").write_bytes(checkpoint.read_bytes())
    first = read_card(trained / "tiny")
    args = train_args(mnist_dir, tmp_path, "tiny", "--epochs", "2", "--resume")
    assert train.main(args) == 0
    card = read_card(tmp_path / "tiny")
    assert card["steps"] == 8 and card["epochs"] == pytest.approx(2.0)
    assert card["learning_curve"][:1] == first["learning_curve"]
    assert len(card["learning_curve"]) == 2
    assert card["training_commands"] == [first["command"], card["command"]]
    assert card["command"].endswith("--resume")


def test_resume_keeps_what_a_person_wrote_on_the_card(trained, mnist_dir, tmp_path):
    (tmp_path / "tiny-checkpoints").mkdir()
    (tmp_path / "tiny-checkpoints" / "last.pt").write_bytes(
        (trained / "tiny-checkpoints" / "last.pt").read_bytes())
    previous = read_card(trained / "tiny")
    previous["levels_choice"] = "K = 2: ink or paper"
    previous["test_nll_nats"] = -1.0  # written afresh by the trainer, never kept
    save_model(load_model(trained / "tiny"), tmp_path / "tiny",
               **{k: v for k, v in previous.items() if k != "config"})
    assert train.main(train_args(mnist_dir, tmp_path, "tiny", "--epochs", "2", "--resume")) == 0
    card = read_card(tmp_path / "tiny")
    assert card["levels_choice"] == "K = 2: ink or paper"
    assert card["test_nll_nats"] > 0 and card["steps"] == 8


def test_resume_from_a_checkpoint_without_commands_lists_this_one_after_the_cards(
        trained, mnist_dir, tmp_path):
    # Checkpoints made before they kept the run's commands: the card holds the history.
    checkpoint = torch.load(trained / "tiny-checkpoints" / "last.pt", weights_only=True)
    del checkpoint["commands"]
    (tmp_path / "tiny-checkpoints").mkdir()
    torch.save(checkpoint, tmp_path / "tiny-checkpoints" / "last.pt")
    previous = read_card(trained / "tiny")
    history = [previous["command"], previous["command"] + " --resume"]
    save_model(load_model(trained / "tiny"), tmp_path / "tiny",
               **{k: v for k, v in previous.items() if k != "config"},
               training_commands=history)
    assert train.main(train_args(mnist_dir, tmp_path, "tiny", "--epochs", "2", "--resume")) == 0
    card = read_card(tmp_path / "tiny")
    assert card["training_commands"] == [*history, card["command"]]
    assert card["command"].endswith("--resume")


def test_resume_from_mid_epoch_matches_an_uninterrupted_run(mnist_dir, tmp_path):
    common = ["--epochs", "2", "--schedule", "constant"]
    assert train.main(train_args(mnist_dir, tmp_path, "straight", *common)) == 0
    # A zero time budget stops after the first step, inside the first epoch.
    stopped = train_args(mnist_dir, tmp_path, "resumed", *common, "--time-budget", "0")
    assert train.main(stopped) == 0
    assert read_card(tmp_path / "resumed")["steps"] == 1
    assert train.main(train_args(mnist_dir, tmp_path, "resumed", "--resume")) == 0

    straight, resumed = (
        torch.load(tmp_path / f"{name}-checkpoints" / "last.pt", weights_only=True)
        for name in ("straight", "resumed")
    )
    assert resumed["step"] == straight["step"] == 8
    # The last weights, not the saved best ones: those may come from different validations.
    for name, tensor in resumed["model"].items():
        assert torch.equal(tensor, straight["model"][name]), name
    assert resumed["learning_curve"][-1]["valid_nats"] == straight["learning_curve"][-1][
        "valid_nats"]


def test_checkpoints_between_epochs_do_not_validate(mnist_dir, tmp_path):
    """A checkpoint after every step, validation only at each epoch's end: the learning
    curve has one point per epoch, each at the epoch's last step."""
    args = train_args(mnist_dir, tmp_path, "often", "--epochs", "2",
                      "--checkpoint-minutes", "0")
    assert train.main(args) == 0
    curve = read_card(tmp_path / "often")["learning_curve"]
    assert [(point["epoch"], point["step"]) for point in curve] == [(1.0, 4), (2.0, 8)]


def test_checkpoint_loads_with_weights_only(trained):
    checkpoint = torch.load(trained / "tiny-checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 4 and checkpoint["settings"]["layers"] == 1


def test_resume_refuses_a_changed_architecture(trained, mnist_dir, tmp_path, capsys):
    args = train_args(mnist_dir, trained, "tiny", "--resume")
    args[args.index("--layers") + 1] = "2"
    args[args.index("--output-dir") + 1] = str(tmp_path)
    assert train.main(args) == 2
    assert "--layers 2 (the checkpoint has 1)" in capsys.readouterr().err


def test_gray_mode_trains_a_categorical_model_under_bf16_autocast(mnist_dir, tmp_path):
    args = train_args(mnist_dir, tmp_path, "gray", "--epochs", "1", "--mode", "gray",
                      "--levels", "4", "--num-classes", "0", "--limit-train", "16",
                      "--precision", "bf16")
    assert train.main(args) == 0
    card = read_card(tmp_path / "gray")
    assert card["data_mode"] == "gray" and card["levels"] == 4
    assert card["config"].distribution == "categorical" and card["steps"] == 1
    assert card["training"]["precision"] == "bf16"
    assert math.isfinite(card["test_nll_nats"]) and "test_nll_nats_with_labels" not in card


def test_a_new_run_refuses_to_overwrite_an_existing_checkpoint(trained, mnist_dir, capsys):
    args = train_args(mnist_dir, trained, "tiny", "--epochs", "1")
    assert train.main(args) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("module", [train, evaluate])
def test_a_bad_data_path_exits_2_naming_the_path(module, trained, tmp_path, capsys):
    missing = tmp_path / "no-such-mnist"
    if module is train:
        args = train_args(missing, tmp_path, "tiny", "--epochs", "1")
    else:
        args = ["--model", str(trained / "tiny"), "--data", str(missing)]
    assert module.main(args) == 2
    assert str(missing) in capsys.readouterr().err


def test_evaluate_a_bad_model_path_exits_2_naming_the_path(mnist_dir, tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    assert evaluate.main(["--model", str(missing), "--data", str(mnist_dir)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_gray_mode_without_levels_is_refused(mnist_dir, tmp_path, capsys):
    args = train_args(mnist_dir, tmp_path, "gray", "--mode", "gray")
    assert train.main(args) == 2
    assert "--levels" in capsys.readouterr().err


def test_a_budget_cut_run_ends_with_the_learning_rate_annealed(mnist_dir, tmp_path):
    # 1000 epochs planned, 2 seconds given: the schedule follows the budget, not the epochs.
    args = train_args(mnist_dir, tmp_path, "cut", "--epochs", "1000", "--time-budget", "0.033")
    assert train.main(args) == 0
    checkpoint = torch.load(tmp_path / "cut-checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] < 1000 * 4
    assert checkpoint["scheduler"]["position"] == 1.0


@pytest.mark.parametrize(("patience", "epochs", "stopped"),
                         [(2, 3, "validation stalled"), (None, 6, "epochs")])
def test_patience_stops_once_validation_stalls_and_keeps_the_best_weights(
        mnist_dir, tmp_path, monkeypatch, capsys, patience, epochs, stopped):
    """Validation (made to get worse after the first epoch) is best after epoch 1: with
    --patience 2 the run stops two epochs later, tests and saves epoch 1's weights."""
    scores = iter([50.0, 51.0, 52.0, 53.0, 54.0, 55.0])
    monkeypatch.setattr(train, "mean_nll_nats", lambda *args, **kwargs: next(scores))
    extra = ("--epochs", "6") + (("--patience", str(patience)) if patience else ())
    assert train.main(train_args(mnist_dir, tmp_path, "patient", *extra)) == 0
    card = read_card(tmp_path / "patient")
    assert card["epochs"] == epochs
    assert card["training"]["stopped"] == stopped
    assert card["training"]["patience"] == patience
    steps_per_epoch = card["steps"] // epochs
    assert card["training"]["best_step"] == steps_per_epoch  # the weights of epoch 1
    said = capsys.readouterr().err
    assert ("Validation has not improved for 2.00 epochs" in said) == (patience is not None)


def test_patience_must_be_positive(mnist_dir, tmp_path, capsys):
    assert train.main(train_args(mnist_dir, tmp_path, "x", "--patience", "0")) == 2
    assert "--patience must be a positive number of epochs, not 0" in capsys.readouterr().err


@needs_a_cpp_compiler
def test_compiled_training_matches_eager_training(mnist_dir, tmp_path):
    """Same weights, and the same scores: a compiled run also validates and tests through a
    compiled network, its last batch padded to the compiled shape."""
    weights, cards = {}, {}
    for compile_choice in ("off", "on"):
        name = f"compile-{compile_choice}"
        args = train_args(mnist_dir, tmp_path, name, "--epochs", "1", "--limit-train", "32",
                          "--compile", compile_choice)
        assert train.main(args) == 0
        cards[compile_choice] = read_card(tmp_path / name)
        assert cards[compile_choice]["training"]["compiled"] == (compile_choice == "on")
        weights[compile_choice] = torch.load(
            tmp_path / f"{name}-checkpoints" / "last.pt", weights_only=True)["model"]
    for key, tensor in weights["off"].items():
        torch.testing.assert_close(weights["on"][key], tensor, rtol=1e-4, atol=1e-5)
    eager, compiled = cards["off"], cards["on"]
    assert compiled["training"]["test_images"] % train.EVAL_BATCH_SIZE  # a padded batch
    for key in ("valid_nll_nats", "test_nll_nats", "test_nll_nats_with_labels"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4)
    assert compiled["learning_curve"][-1]["valid_nats"] == pytest.approx(
        eager["learning_curve"][-1]["valid_nats"], rel=1e-4)


def test_compile_auto_times_both_ways_and_trains_the_faster(mnist_dir, tmp_path, capsys):
    args = train_args(mnist_dir, tmp_path, "auto", "--epochs", "1", "--limit-train", "16",
                      "--compile", "auto")
    assert train.main(args) == 0
    training = read_card(tmp_path / "auto")["training"]
    timings = {t["engine"]: t["images_per_second"] for t in training["engine_timings"]}
    assert set(timings) == {"eager fp32", "compiled fp32"}
    # Without a C++ compiler the compiled engine fails to time (None) and eager trains.
    working = {engine: speed for engine, speed in timings.items() if speed is not None}
    assert "eager fp32" in working
    fastest = max(working, key=working.get)
    assert training["compiled"] == fastest.startswith("compiled")
    assert f"Training {fastest}" in capsys.readouterr().err


def test_init_from_starts_from_the_models_weights_and_continues_its_card(
        trained, mnist_dir, tmp_path):
    # One step at a vanishing learning rate: the weights are still the initial model's.
    args = train_args(mnist_dir, tmp_path, "continued", "--epochs", "1", "--lr", "1e-12",
                      "--time-budget", "0", "--init-from", str(trained / "tiny"))
    assert train.main(args) == 0
    first, continued = load_model(trained / "tiny"), load_model(tmp_path / "continued")
    after = continued.state_dict()
    for key, before in first.state_dict().items():
        torch.testing.assert_close(after[key], before, rtol=0, atol=1e-6, msg=key)
    old, new = read_card(trained / "tiny"), read_card(tmp_path / "continued")
    assert new["config"] == old["config"]
    assert new["training_commands"] == [old["command"], new["command"]]
    assert new["steps"] == old["steps"] + 1
    assert new["wall_minutes"] >= old["wall_minutes"]
    runs = [point["run"] for point in new["learning_curve"]]
    assert runs == [0] * len(old["learning_curve"]) + [1]
    assert new["learning_curve"][-1]["step"] == new["steps"]
    assert new["initialised_from"]["model"] == str(trained / "tiny")
    assert new["initialised_from"]["this_run"]["steps"] == 1


def test_init_from_takes_the_architecture_and_refuses_a_different_one(
        trained, mnist_dir, tmp_path, capsys):
    args = train_args(mnist_dir, tmp_path, "other", "--init-from", str(trained / "tiny"))
    args[args.index("--hidden-channels") + 1] = "8"
    assert train.main(args) == 2
    assert "--hidden-channels 8 (the model has 4)" in capsys.readouterr().err


def test_init_from_a_missing_model_exits_2_naming_it(mnist_dir, tmp_path, capsys):
    args = train_args(mnist_dir, tmp_path, "other", "--init-from", str(tmp_path / "nothing"))
    assert train.main(args) == 2
    assert "nothing" in capsys.readouterr().err
