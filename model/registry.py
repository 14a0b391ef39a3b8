"""Where bundled models live, and which one the app and the commands use by default."""

from __future__ import annotations

import sys
from pathlib import Path

from .config import ModelConfig

# Source tree: <root>/resources/models. A PyInstaller bundle unpacks resources beside it.
ROOT = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent.parent))
MODELS_DIR = ROOT / "resources" / "models"

DEFAULT_MODEL = "digits-ink"

# The size the default model ships at: what benchmarks use (with random weights) until a
# trained one exists, so that speed is measured on the real thing.
SHIPPED_CONFIG = ModelConfig(
    architecture="gated", channels=1, distribution="bernoulli", levels=2, height=28, width=28,
    layers=10, hidden_channels=32, first_kernel_size=7, kernel_size=3, num_classes=10,
)


def bundled_models() -> list[str]:
    """Names of the models shipped in resources/models, sorted."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.safetensors"))


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundled model's name, or a path to `x.safetensors`, `x.json` or `x`."""
    if isinstance(name_or_path, str) and name_or_path in bundled_models():
        return MODELS_DIR / f"{name_or_path}.safetensors"
    return Path(name_or_path)
