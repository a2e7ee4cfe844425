"""Tiny timm and Hugging Face models of each family the harness explains (random weights, 32-64 px),
as the overrides a user types: shared by the transformer tests and scripts/models_matrix.py.

Each family is ``(overrides, side)``: ``model=timm`` / ``model=hf`` overrides that build it in well
under a second, and the input side its loader reads from it (ViT, DeiT and Swin are built for 32
px; the CNNs take 64 px so their last stage is still a 2 x 2 map).
"""

from __future__ import annotations

from hydra.utils import instantiate
from torch import nn

from bench.api import compose

_VIT = "{img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2}"
_HF_VIT = (
    "{image_size: 32, patch_size: 8, hidden_size: 32, num_hidden_layers: 2, "
    "num_attention_heads: 2, intermediate_size: 64}"
)

#: family -> (overrides, input side)
FAMILIES: dict[str, tuple[list[str], int]] = {
    "timm_vit": (["model=timm", "model.arch=vit_tiny_patch16_224", f"model.kwargs={_VIT}"], 32),
    "timm_deit": (
        ["model=timm", "model.arch=deit_tiny_distilled_patch16_224", f"model.kwargs={_VIT}"],
        32,
    ),
    "timm_swin": (
        [
            "model=timm",
            "model.arch=swin_tiny_patch4_window7_224",
            "model.kwargs={img_size: 32, patch_size: 2, window_size: 4, depths: [1, 1], "
            "embed_dim: 16, num_heads: [1, 2]}",
        ],
        32,
    ),
    "timm_convnext": (
        [
            "model=timm",
            "model.arch=convnext_atto",
            "model.kwargs={depths: [1, 1, 1, 1], dims: [8, 16, 32, 64]}",
            "model.input_size=[64,64]",
        ],
        64,
    ),
    "timm_resnet": (["model=timm", "model.arch=resnet18", "model.input_size=[64,64]"], 64),
    "timm_efficientnet": (
        ["model=timm", "model.arch=efficientnet_b0", "model.input_size=[64,64]"],
        64,
    ),
    "hf_vit": (["model=hf", "model.config=vit", f"model.overrides={_HF_VIT}"], 32),
    "hf_deit": (
        [
            "model=hf",
            "model.config=deit",
            "model.overrides={image_size: 32, patch_size: 8, hidden_size: 32, "
            "num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, "
            "architectures: [DeiTForImageClassificationWithTeacher]}",
        ],
        32,
    ),
    "hf_swin": (
        [
            "model=hf",
            "model.config=swin",
            "model.overrides={image_size: 32, patch_size: 2, window_size: 4, embed_dim: 16, "
            "depths: [1, 1], num_heads: [1, 2]}",
        ],
        32,
    ),
    "hf_convnext": (
        [
            "model=hf",
            "model.config=convnext",
            "model.overrides={image_size: 64, hidden_sizes: [8, 16, 32, 64], depths: [1, 1, 1, 1]}",
        ],
        64,
    ),
}
#: The families the issue's matrix test names (timm ViT, DeiT, Swin, ConvNeXt).
TIMM_CORE = ("timm_vit", "timm_deit", "timm_swin", "timm_convnext")
#: Hugging Face families (ViT, ConvNeXt and Swin at least).
HF_CORE = ("hf_vit", "hf_swin", "hf_convnext")


def family_overrides(family: str, num_classes: int = 5) -> list[str]:
    """The overrides of ``family`` with a head of ``num_classes`` logits."""
    return [*FAMILIES[family][0], f"model.num_classes={num_classes}"]


def load_family(family: str, num_classes: int = 5) -> nn.Module:
    """The tiny model of ``family`` as a job loads it (composed, then instantiated)."""
    return instantiate(compose(*family_overrides(family, num_classes)).model)
