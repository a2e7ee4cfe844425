"""CAM layers: ``cam_layer: auto`` reaches every CAM method; any module with 4-D output is a layer."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bench.api import compose
from bench.config.overrides import options
from bench.core.errors import ConfigError
from bench.engine.run import run
from bench.methods.cam import GradCAM, relu_rule
from tests.methods.conftest import make_images, make_model

#: The CAM-family configs (ViT Grad-CAM needs a transformer; it has its own tests).
CAMS = [
    m
    for m in options("method")
    if OmegaConf.to_container(compose(f"method={m}", resolve=False).method).get("layer")
    == "${model.cam_layer}"
    and m != "vit_gradcam"
]


class GapNet(nn.Module):
    """A user's own CNN: conv blocks, global average pooling, a linear head (``model=custom``)."""

    def __init__(self, num_classes: int = 8, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


MODELS = {
    "resnet18": [
        "model=torchvision",
        "model.arch=resnet18",
        "model.weights=null",
        "model.num_classes=8",
    ],
    "custom": [
        "model=custom",
        "trust_code=true",
        "model.module=tests.methods.test_cam_layers.GapNet",
        "model.mean=[0.5,0.5,0.5]",
        "model.std=[0.25,0.25,0.25]",
    ],
}


def test_the_cam_configs_are_found():
    assert {"gradcam", "cam", "scorecam", "eigencam", "guided_gradcam"} <= set(CAMS)


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("method", CAMS)
def test_every_cam_method_runs_with_an_auto_layer(method, model, tmp_path):
    cfg = compose(
        *MODELS[model],
        "model.input_size=[96,96]",
        f"method={method}",
        "metric=[sparseness]",
        "dataset.limit=1",
        "batch_size=1",
        resolve=False,
    )
    assert OmegaConf.to_container(cfg)["method"]["layer"] == "${model.cam_layer}"
    assert cfg.model.cam_layer == "auto"
    record = run(cfg, tmp_path)
    assert record["status"] == "completed" and record["rows"] == 1
    chosen = {"resnet18": "layer4", "custom": "features"}[model]
    assert (
        record["model"]["cam_layer"] == chosen and record["method"]["settings"]["layer"] == chosen
    )


def test_any_module_with_feature_maps_is_a_layer():
    model = make_model("shapes_cnn")  # features.3 = Sequential(conv, batch norm, ReLU)
    images, targets = make_images("shapes_cnn", n=2), torch.tensor([0, 3])
    block = GradCAM("features.3")(model, images, targets)
    for name in ("features.3.2", "features.3.1"):  # the block's ReLU (captum's choice), its BN
        GradCAM(name).check(model)
    torch.testing.assert_close(GradCAM("features.3.2")(model, images, targets), block)
    assert GradCAM("features.3.1")(model, images, targets).shape == block.shape
    with pytest.raises(
        ConfigError, match=r"layer=fc \(Linear\) outputs \[1, 8\], not feature maps"
    ):
        GradCAM("fc").check(model)


def test_auto_outside_the_runner_uses_the_loaders_choice():
    model = make_model("shapes_cnn")  # bench_meta.cam_layer = features.3
    images, targets = make_images("shapes_cnn", n=1), torch.tensor([1])
    torch.testing.assert_close(
        GradCAM("auto")(model, images, targets), GradCAM("features.3")(model, images, targets)
    )
    bare = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(
        ConfigError, match="layer=auto needs a model loaded by a bench.models loader"
    ):
        GradCAM("auto").check(bare)


def test_relu_before_or_after_upsampling_or_none():
    model = make_model("shapes_cnn")
    images, targets = make_images("shapes_cnn", n=2), torch.tensor([0, 3])
    none = GradCAM("features.3", relu="none")(model, images, targets)
    after = GradCAM("features.3", relu="after_upsample")(model, images, targets)
    before = GradCAM("features.3", relu="before_upsample")(model, images, targets)
    torch.testing.assert_close(after, none.clamp_min(0))
    assert (before >= 0).all() and not torch.allclose(before, after)  # bilinear mixes signs
    torch.testing.assert_close(GradCAM("features.3", relu=True)(model, images, targets), before)
    assert relu_rule(False) == "none"
    with pytest.raises(ConfigError, match="relu=later is not valid; accepted: after_upsample"):
        GradCAM("features.3", relu="later")
