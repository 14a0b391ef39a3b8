"""PixelCNN models and samplers in plain PyTorch (this package never imports Qt)."""

from .config import ConfigError, ModelConfig
from .distributions import nll, nll_nats
from .gated import GatedPixelCNN
from .io import ModelFileError, build_model, load_model, read_card, save_model
from .masked import MaskedConv2d, build_mask
from .pixelcnn import PixelCNN
from .sampling import Completion, PixelSample, complete, pick_device, reference_completion

__all__ = [
    "Completion", "ConfigError", "GatedPixelCNN", "MaskedConv2d", "ModelConfig",
    "ModelFileError", "PixelCNN", "PixelSample", "build_mask", "build_model", "complete",
    "load_model", "nll", "nll_nats", "pick_device", "read_card", "reference_completion",
    "save_model",
]
