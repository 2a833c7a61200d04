"""PyTorch models: backbones, the three heads, the structural-matching math and the matcher
module that ``matcher.onnx`` holds, the configuration, and safetensors checkpoints."""

from .backbones import Backbone, create_backbone, efficientnet_lite_imagenet
from .checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from .config import BACKBONES, HEADS, ModelConfig
from .embedder import EmbeddingModel, build_model, create_head
from .head_output import HeadOutput

__all__ = [
    "BACKBONES", "HEADS", "Backbone", "EmbeddingModel", "HeadOutput", "ModelConfig",
    "build_model", "create_backbone", "create_head", "efficientnet_lite_imagenet",
    "load_checkpoint", "read_checkpoint_metadata", "save_checkpoint",
]
