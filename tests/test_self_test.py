"""`main.py --self-test`, and the promise that no pickle is ever loaded."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gui.selftest as selftest
from conftest import tiny_model
from model import complete as real_complete
from model import save_model
from model.images import load_image
from model.registry import SAMPLE_COLOUR

ROOT = Path(__file__).resolve().parent.parent


# -- the self-test --------------------------------------------------------------------------

@pytest.mark.slow
def test_self_test_of_the_bundled_models_passes_from_the_command_line(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "main.py", "--self-test"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "self-test OK"
    for name in selftest.bundled_models():
        assert any(line.startswith(f"ok    model {name}: ") for line in lines), lines
    assert any(line.startswith("ok    kernels: ") for line in lines), lines
    assert any(line.startswith("ok    window: ") for line in lines), lines


@pytest.fixture
def models_dir(tmp_path):
    """A models folder holding one small working model, "tiny"."""
    folder = tmp_path / "models"
    save_model(tiny_model(height=12, width=10, num_classes=3), folder / "tiny")
    return folder


def test_self_test_passes_with_working_models(models_dir, qapp, capsys):
    assert selftest.run_self_test(models_dir) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok    model tiny: 60 pixels x 2 candidates completed")
    assert out[1].startswith("ok    kernels: ")
    assert out[2].startswith("ok    window: ")
    assert out[-1] == "self-test OK"


def test_the_self_test_completes_a_colour_model_on_the_colour_sample(tmp_path):
    path = tmp_path / "tiny-rgb"
    save_model(tiny_model(channels=3, distribution="categorical", levels=8, height=8, width=8),
               path, data_mode="rgb")
    line, completed = selftest.check_model(path.with_suffix(".safetensors"))
    assert line.startswith("32 pixels x 2 candidates completed")
    smiley = load_image(SAMPLE_COLOUR, 8, 8, 3, 8)
    assert np.array_equal(completed[:, :4], smiley[:, :4])


def test_a_broken_model_fails_the_self_test_naming_it(models_dir, qapp, capsys):
    weights = (models_dir / "tiny.safetensors").read_bytes()
    (models_dir / "broken.safetensors").write_bytes(weights[:len(weights) // 2])
    (models_dir / "broken.json").write_bytes((models_dir / "tiny.json").read_bytes())
    assert selftest.run_self_test(models_dir) == 1
    captured = capsys.readouterr()
    assert "FAIL  model broken: " in captured.out
    assert "ok    model tiny: " in captured.out  # every model is still checked
    assert "ok    window: " in captured.out
    assert captured.err.startswith("self-test FAILED: model broken: ")
    assert "broken.safetensors: truncated" in captured.err
    assert "self-test OK" not in captured.out


def test_no_models_at_all_fails_the_self_test(tmp_path, qapp, capsys):
    assert selftest.run_self_test(tmp_path) == 1
    err = capsys.readouterr().err
    assert f"models: no models (*.safetensors) found in {tmp_path}." in err
    assert "window: not shown: no model could be loaded." in err


class Samples(list):
    """What check_model reads from a completion: its samples (iterated) and `.images`."""

    images: np.ndarray


def damaged(damage):
    """A stand-in for model.complete: a real completion, then `damage` applied to it."""
    def complete(model, image, known, **options):
        completion = real_complete(model, image, known, **options)
        samples, images = damage(list(completion), completion.images.copy())
        result = Samples(samples)
        result.images = images
        return result
    return complete


def change_a_known_pixel(samples, images):
    images[0, 0, 0, 0] = 1 - images[0, 0, 0, 0]
    return samples, images


def change_a_known_pixel_of_the_second_candidate(samples, images):
    images[1, 0, 0, 0] = 1 - images[1, 0, 0, 0]
    return samples, images


def skip_an_unknown_pixel(samples, images):
    return samples[1:], images


@pytest.mark.parametrize(("damage", "message"), [
    (change_a_known_pixel, "the completion changed 1 known pixel values."),
    (change_a_known_pixel_of_the_second_candidate,
     "the completion changed 1 known pixel values."),
    (skip_an_unknown_pixel, "sampled 119 of the 120 unknown pixel values and 0 others."),
])
def test_the_model_check_catches_a_wrong_completion(models_dir, monkeypatch, damage, message):
    monkeypatch.setattr(selftest, "complete", damaged(damage))
    with pytest.raises(selftest.SelfTestError, match=re.escape(message)):
        selftest.check_model(models_dir / "tiny.safetensors")


# -- no pickle is ever loaded ---------------------------------------------------------------

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib"}
NEVER_IMPORTED = {"dill", "cloudpickle", "joblib", "shelve"}  # loaders of pickles, nothing else


def pickle_loaders(source: str) -> list[str]:
    """Every place in `source` that could unpickle: `torch.load` without
    `weights_only=True`, `pickle.load`/`loads`/`Unpickler` (and dill's, joblib's...),
    `np.load` with `allow_pickle` not False, `pandas.read_pickle`, and any import of dill,
    cloudpickle, joblib or shelve. Module aliases (`import numpy as np`) are followed."""
    tree = ast.parse(source)
    aliases = {}  # local name -> "module" or "module.attribute"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = \
                    alias.name if alias.asname else alias.name.split(".")[0]
                if alias.name.split(".")[0] in NEVER_IMPORTED:
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in NEVER_IMPORTED:
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted_name(node.func, aliases)
        if name is None:
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        module, _, function = name.rpartition(".")
        if name == "torch.load":
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
        elif module in PICKLE_MODULES and function in ("load", "loads", "Unpickler"):
            found.append(f"line {node.lineno}: {name}")
        elif name == "numpy.load" and "allow_pickle" in keywords:
            allow = keywords["allow_pickle"]
            if not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append(f"line {node.lineno}: numpy.load with allow_pickle")
        elif name == "pandas.read_pickle":
            found.append(f"line {node.lineno}: {name}")
    return found


def dotted_name(node, aliases) -> str | None:
    """"numpy.load" for `np.load` after `import numpy as np`; None if not a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


@pytest.mark.parametrize(("snippet", "expected"), [
    ("import torch\ntorch.load(p)", ["line 2: torch.load without weights_only=True"]),
    ("import torch\ntorch.load(p, weights_only=False)",
     ["line 2: torch.load without weights_only=True"]),
    ("import torch as t\nt.load(p, map_location='cpu')",
     ["line 2: torch.load without weights_only=True"]),
    ("from torch import load\nload(p)", ["line 2: torch.load without weights_only=True"]),
    ("import pickle\npickle.load(f)", ["line 2: pickle.load"]),
    ("import pickle\nx = pickle.loads(b)", ["line 2: pickle.loads"]),
    ("import pickle as pk\npk.Unpickler(f).load()", ["line 2: pickle.Unpickler"]),
    ("from pickle import loads\nloads(b)", ["line 2: pickle.loads"]),
    ("import numpy as np\nnp.load(p, allow_pickle=True)", ["line 2: numpy.load with allow_pickle"]),
    ("import numpy\nnumpy.load(p, allow_pickle=flag)", ["line 2: numpy.load with allow_pickle"]),
    ("import pandas as pd\npd.read_pickle(p)", ["line 2: pandas.read_pickle"]),
    ("import joblib", ["line 1: import joblib"]),
    ("from dill import loads", ["line 1: from dill import ..."]),
    # Safe loaders, and pickle used for its exception type only:
    ("import torch\ntorch.load(p, map_location='cpu', weights_only=True)", []),
    ("import numpy as np\nnp.load(p)\nnp.load(p, allow_pickle=False)", []),
    ("import pickle\ntry:\n    pass\nexcept pickle.UnpicklingError:\n    pass", []),
    ("from safetensors.torch import load_file\nload_file(p)", []),
    ("import json\njson.load(f)", []),
])
def test_the_pickle_scanner_flags_every_loader_and_nothing_else(snippet, expected):
    assert pickle_loaders(snippet) == expected


def test_no_pickle_loader_appears_in_the_app():
    files = [ROOT / "main.py", *sorted((ROOT / "model").rglob("*.py")),
             *sorted((ROOT / "gui").rglob("*.py"))]
    assert len(files) > 10
    found = [f"{path.relative_to(ROOT)} {where}" for path in files
             for where in pickle_loaders(path.read_text(encoding="utf-8"))]
    assert found == []
