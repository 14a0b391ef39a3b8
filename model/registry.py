"""Where bundled models live, and which one the app and the commands use by default."""

from __future__ import annotations

import sys
from pathlib import Path

from .config import ModelConfig

# Every path to a bundled file starts here. In the source tree resources/ sits beside model/;
# in a PyInstaller bundle (one-dir or one-file) it sits in sys._MEIPASS, the folder that
# holds the bundle's Python modules and data (dist/pixelcnn-studio/_internal).
ROOT = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent.parent))
RESOURCES_DIR = ROOT / "resources"
MODELS_DIR = RESOURCES_DIR / "models"
SAMPLE_DIGIT = RESOURCES_DIR / "samples" / "digit-3.png"
# The colour models' sample picture (resources/samples/make_smiley.py draws it).
SAMPLE_COLOUR = RESOURCES_DIR / "samples" / "smiley.png"
APP_ICON = RESOURCES_DIR / "icons" / "pixelcnn-studio.png"

DEFAULT_MODEL = "digits-ink"

# The size the default model ships at: what benchmarks use (with random weights) until a
# trained one exists, so that speed is measured on the real thing.
SHIPPED_CONFIG = ModelConfig(
    architecture="gated", channels=1, distribution="bernoulli", levels=2, height=28, width=28,
    layers=10, hidden_channels=32, first_kernel_size=7, kernel_size=3, num_classes=10,
)


def bundled_models(models_dir: str | Path | None = None) -> list[str]:
    """Names of the models shipped in resources/models (or in `models_dir`), sorted."""
    return sorted(p.stem for p in Path(models_dir or MODELS_DIR).glob("*.safetensors"))


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundled model's name (it wins), else a path to `x.safetensors`, `x.json` or `x`."""
    if isinstance(name_or_path, str) and name_or_path in bundled_models():
        return MODELS_DIR / f"{name_or_path}.safetensors"
    return Path(name_or_path)


def sample_picture(channels: int) -> Path:
    """The bundled picture that the demo and the self-test complete: a digit for a grey or
    black-and-white model, a smiley for a colour one."""
    return SAMPLE_COLOUR if channels == 3 else SAMPLE_DIGIT
