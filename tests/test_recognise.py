"""model.training.recognise: the digit classifier, its cache, and the recognition rate, on
tiny data."""

import json

import numpy as np
import pytest
import torch

from conftest import save_tiny_digit_model, tiny_digit_model, tiny_model
from model import complete
from model.posterior import class_posterior
from model.training import recognise

pytestmark = pytest.mark.usefixtures("one_thread")


def test_classifier_maps_a_batch_of_levels_to_ten_logits():
    classifier = recognise.DigitClassifier(levels=4)
    logits = classifier(torch.randint(0, 4, (5, 1, 28, 28), dtype=torch.uint8))
    assert logits.shape == (5, 10)
    with pytest.raises(ValueError, match="N x 1 x 28 x 28"):
        classifier(torch.zeros(5, 28, 28))


def test_training_is_deterministic_and_leaves_global_rng_alone(striped_mnist):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, first_accuracy = recognise.train_classifier(striped_mnist, "threshold", epochs=1,
                                                       limit=20)
    assert torch.equal(torch.rand(1), expected_next)
    second, second_accuracy = recognise.train_classifier(striped_mnist, "threshold", epochs=1,
                                                         limit=20)
    assert 0.0 <= first_accuracy <= 1.0 and first_accuracy == second_accuracy
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_classifier_is_cached_as_safetensors_and_reused(striped_mnist, tmp_path, monkeypatch):
    classifier, accuracy = recognise.load_or_train_classifier(
        striped_mnist, "gray", 4, epochs=1, cache_dir=tmp_path)
    weights, sidecar = recognise.classifier_paths("gray", 4, tmp_path)
    assert weights.name == "classifier-gray-4.safetensors" and weights.is_file()
    info = json.loads(sidecar.read_text())
    assert info["test_accuracy"] == accuracy and info["mode"] == "gray" and info["levels"] == 4

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been reused")

    monkeypatch.setattr(recognise, "train_classifier", no_training)
    cached, cached_accuracy = recognise.load_or_train_classifier(
        striped_mnist, "gray", 4, cache_dir=tmp_path)
    assert cached_accuracy == accuracy
    for a, b in zip(classifier.state_dict().values(), cached.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_recognition_rate_counts_add_up_and_keeps_the_top_half():
    pixelcnn = tiny_digit_model()
    classifier = recognise.DigitClassifier(levels=2).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 2, size=(3, 1, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4])
    result = recognise.recognition_rate(pixelcnn, classifier, images, labels, seed=7)
    assert result["images"] == 3
    assert set(result["modes"]) == {"none"}  # a model without classes has no other mode
    assert "posterior_accuracy_whole" not in result
    none = result["modes"]["none"]
    assert none["recognised"] == int((none["predictions"] == labels).sum())
    assert none["recognised_rate"] == none["recognised"] / 3
    for key in ("original", "top_half_only"):
        assert result[f"classifier_accuracy_{key}"] == result[f"classifier_correct_{key}"] / 3
    completions = none["completions"]
    assert completions.shape == images.shape and completions.dtype == np.uint8
    assert np.array_equal(completions[:, :, :14], images[:, :, :14])
    assert completions.max() <= 1
    assert (none["classes_used"] == -1).all()
    again = recognise.recognition_rate(pixelcnn, classifier, images, labels, seed=7)
    assert np.array_equal(again["modes"]["none"]["completions"], completions)


def test_each_class_mode_completes_with_the_class_it_names():
    pixelcnn = tiny_model(height=28, width=28, layers=1, hidden_channels=4, num_classes=10)
    classifier = recognise.DigitClassifier(levels=2).eval()
    images = np.random.default_rng(1).integers(0, 2, size=(4, 1, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1])
    result = recognise.recognition_rate(pixelcnn, classifier, images, labels, seed=2)
    modes = result["modes"]
    assert list(modes) == list(recognise.CLASS_MODES)
    assert (modes["none"]["classes_used"] == -1).all()
    assert np.array_equal(modes["true"]["classes_used"], labels)
    known = recognise.bottom_half_known(28, 28)
    posteriors = [class_posterior(pixelcnn, image, known) for image in images]
    assert np.array_equal(modes["likely"]["classes_used"], [np.argmax(p) for p in posteriors])
    for k, image in enumerate(images):
        drawn = complete(pixelcnn, image, known, seed=2 + k, class_label="drawn")
        assert modes["drawn"]["classes_used"][k] == drawn.task.class_labels[0]
        assert np.array_equal(modes["drawn"]["completions"][k], drawn.run()[0])
    accuracy = np.mean([np.argmax(class_posterior(pixelcnn, image)) == label
                        for image, label in zip(images, labels, strict=True)])
    assert result["posterior_accuracy_whole"] == accuracy


def test_command_prints_json_and_rejects_bad_paths(striped_mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    save_tiny_digit_model(tmp_path / "tiny")
    assert recognise.main(["--model", str(tmp_path / "tiny"), "--data", str(striped_mnist),
                           "--count", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"model", "images", "recognised_rate", "classifier_accuracy_original",
                           "classifier_accuracy_top_half_only", "classifier_test_accuracy",
                           "temperature"}
    assert result["images"] == 2 and set(result["recognised_rate"]) == {"none"}
    assert 0.0 <= result["recognised_rate"]["none"] <= 1.0

    assert recognise.main(["--model", str(tmp_path / "missing"), "--data", str(striped_mnist)]) == 2
    assert "No model" in capsys.readouterr().err
    assert recognise.main(["--model", str(tmp_path / "tiny"), "--data", str(tmp_path)]) == 2
    assert "missing MNIST file" in capsys.readouterr().err
