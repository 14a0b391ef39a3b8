import gzip
import os
import shutil
import struct
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from model import ModelConfig, build_model, save_model  # noqa: E402

# torch.compile's CPU code is C++ built against Python's headers (g++, python3-dev on Debian).
needs_a_cpp_compiler = pytest.mark.skipif(
    not (shutil.which("g++") and Path(sysconfig.get_paths()["include"], "Python.h").exists()),
    reason="torch.compile needs a C++ compiler and Python's headers")


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough that every test runs in milliseconds."""
    fields = dict(architecture="gated", channels=1, distribution="bernoulli", levels=2,
                  height=6, width=7, layers=2, hidden_channels=6, first_kernel_size=3,
                  kernel_size=3, num_classes=0)
    fields.update(overrides)
    if fields["distribution"] == "categorical" and "levels" not in overrides:
        fields["levels"] = 4
    return ModelConfig(**fields)


def tiny_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = build_model(tiny_config(**overrides))
    # Fresh class biases start at zero; make them matter so class tests can fail.
    for name, parameter in model.named_parameters():
        if "class_bias" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    return model.eval()


def tiny_digit_model():
    """A tiny model of 1 x 28 x 28 digits, the shape the digit classifier of
    model.training.recognise judges."""
    return tiny_model(height=28, width=28, layers=1, hidden_channels=4)


def save_tiny_digit_model(path):
    """tiny_digit_model() saved at `path` with the card of a thresholded-MNIST model."""
    return save_model(tiny_digit_model(), path, data_mode="threshold", levels=2)


@pytest.fixture
def tiny(tmp_path):
    """A saved tiny binary model: (the model, its .safetensors path)."""
    network = tiny_model()
    weights, _ = save_model(network, tmp_path / "models" / "tiny")
    return network, weights


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory):
    """Tests never read or write the user's real settings."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))


@pytest.fixture(autouse=True)
def no_posterior_compiles(monkeypatch):
    """The Looks-like panel compiles a faster posterior for a slow model: seconds of CPU per
    window with a real model. Only the tests of that compile let it happen."""
    monkeypatch.setattr("gui.looks_like.PREPARE_FAST_SCORER", False)


@pytest.fixture(autouse=True)
def warm_ups_finish_within_their_test():
    """A window starts compiling the sampler's kernels in the background when its model
    loads; that thread must not run on into the next test (it sets BLAS's thread limit)."""
    yield
    from gui.model_loading import wait_for_warm_ups

    wait_for_warm_ups(120)


# The main window, offscreen, on tiny models saved as if they were the bundled ones.

def bundle(tmp_path, monkeypatch, card=None, **models) -> Path:
    """Save `models` (name=model) in tmp_path as if they were the bundled ones, with `card`
    (save_model's keywords; by default thresholded data); returns tmp_path."""
    import gui.main_window
    import gui.model_switching

    monkeypatch.setattr(gui.main_window, "bundled_models", lambda: sorted(models))
    for name, model in models.items():
        save_model(model, tmp_path / name, **(card or dict(data_mode="threshold")))
    monkeypatch.setattr(gui.model_switching, "resolve_model",
                        lambda name: tmp_path / f"{name}.safetensors" if name in models
                        else Path(name))
    return tmp_path


def three_models():
    """Three tiny models as bundled: black and white, 16 greys of the same size, and colour
    of another size."""
    return dict(ink=tiny_model(height=8, width=8, num_classes=3),
                gray=tiny_model(distribution="categorical", levels=16, height=8, width=8),
                rgb=tiny_model(channels=3, distribution="categorical", levels=8, height=6,
                               width=6))


def bundled_window(tmp_path, monkeypatch, name="ink"):
    """A shown window on one of three_models(), all of them saved as if bundled."""
    from gui.main_window import MainWindow

    bundle(tmp_path, monkeypatch, **three_models())
    window = MainWindow(name)
    window.show()
    return window


def close(window):
    """Close without the "discard changes?" question."""
    window.undo_stack.setClean()
    window.close()


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """A shown window on the black-and-white model of three_models(), closed after the test
    with no completion left running."""
    w = bundled_window(tmp_path, monkeypatch)
    yield w
    close(w)
    assert not w.runner.is_running()


@pytest.fixture
def tiny_files(tmp_path, monkeypatch):
    """A tiny model saved as if bundled (8x8, 3 classes); yields its directory."""
    return bundle(tmp_path, monkeypatch, tiny=tiny_model(height=8, width=8, num_classes=3))


@pytest.fixture
def tiny_window(qtbot, tiny_files):
    """A shown window on the one tiny model bundled (8x8, 3 classes); the app tests take it
    as their `window`."""
    from gui.main_window import MainWindow

    w = MainWindow("tiny")
    w.show()
    yield w
    close(w)
    assert not w.runner.is_running()


def answer(qtbot, choice: str, tries: int = 500) -> list[list[str]]:
    """Click `choice` in the next question box that opens (within `tries` x 10 ms); the
    list returned fills with the choices each box offered (its buttons, without "&")."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    offered = []

    def click(tries_left=tries):
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            if tries_left:
                QTimer.singleShot(10, lambda: click(tries_left - 1))
            return
        buttons = {button.text().replace("&", ""): button for button in box.buttons()}
        offered.append(list(buttons))
        buttons.get(choice, box.escapeButton() or box.buttons()[-1]).click()

    QTimer.singleShot(0, click)
    return offered


def choose_model(window, name):
    """As the user does it: the Options dock's model box."""
    box = window.options.model_box
    box.setCurrentIndex(box.findText(name))
    box.activated.emit(box.currentIndex())


def erase_bottom(window, rows=4):
    """A diagonal stroke in the top half, and the bottom `rows` rows erased."""
    d = window.canvas.drawing
    d.values[0, :4] = np.eye(4, 8, dtype=np.uint8)
    d.known[-rows:] = False
    d.values[:, -rows:] = 0


def write_mnist(directory, train_images, test_images):
    """Synthetic MNIST IDX files (gzip) in `directory`; labels cycle through 0-9."""
    for prefix, images in (("train", train_images), ("t10k", test_images)):
        labels = np.arange(len(images)) % 10
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            array = np.asarray(array, dtype=np.uint8)
            header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
            header += struct.pack(f">{array.ndim}I", *array.shape)
            (directory / f"{prefix}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(header + array.tobytes()))
    return directory


def striped_digits(labels):
    """Digit d drawn as a bright horizontal bar at row 2 + 2d: easy to tell apart."""
    images = np.zeros((len(labels), 28, 28), np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[2 + 2 * label: 4 + 2 * label, 4:24] = 255
    return images


@pytest.fixture(scope="module")
def striped_mnist(tmp_path_factory):
    """MNIST files of striped digits: 60 training images (50 to train, 10 to validate) and
    12 test images."""
    return write_mnist(tmp_path_factory.mktemp("mnist"), striped_digits(np.arange(60) % 10),
                       striped_digits(np.arange(12) % 10))


@pytest.fixture(scope="module")
def one_thread():
    """Steps here take milliseconds: a second thread only adds hand-off overhead, and on a
    shared, busy CPU its spin-waiting made them up to 30 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FailingGPU:
    """Pretends a CUDA device is there, on which every completion fails with `error`.

    `model.completion_device` picks "cuda" and `model.complete` on it samples like the CPU (the
    same seed, so the same stream) until `fail_after` samples, then raises `error`; with
    `fail_after=None` it raises while building. Set `release` to hold the failing sample
    back until the test has seen the ones before it. `devices` lists each attempt's device.
    """

    def __init__(self, monkeypatch, error: Exception, fail_after: int | None = None):
        import model as model_package
        from model.devices import completion_device
        from model.sampling import complete
        from model.task import Completion

        self.error, self.fail_after = error, fail_after
        self.devices: list[str] = []
        self.release = None  # a threading.Event, or None to fail at once

        def pick_cuda(model, requested=None):
            if requested in (None, "auto", "cuda"):
                return torch.device("cuda")
            return completion_device(model, requested)

        def complete_on(model, image, known=None, *, device, **options):
            device = torch.device(device)
            self.devices.append(device.type)
            if device.type == "cpu":
                return complete(model, image, known, device=device, **options)
            if self.fail_after is None:
                raise self.error
            cpu = complete(model, image, known, device="cpu", **options)
            return Completion(cpu.task, self._failing(cpu), device, cpu.sampler)

        monkeypatch.setattr(model_package, "completion_device", pick_cuda)
        monkeypatch.setattr(model_package, "complete", complete_on)

    def _failing(self, samples):
        for n, sample in enumerate(samples):
            if n == self.fail_after:
                if self.release is not None:
                    self.release.wait(10)
                raise self.error
            yield sample


def cuda_out_of_memory() -> Exception:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
