"""Model loaders: torchvision by name, checkpoints in every accepted form, a user's module, errors."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bench.api import compose
from bench.config.overrides import options
from bench.core.errors import ConfigError
from bench.models import load_module, load_shapes_cnn, load_timm, load_torchvision, meta_of

#: name -> composed ``model`` node of every torchvision model config with a fixed arch
TV_CONFIGS = {
    name: node
    for name in options("model")
    for node in [OmegaConf.to_container(compose(f"model={name}").model)]
    if node["_target_"].endswith("load_torchvision") and node["arch"] != "???"
}
SMALL = [32, 32]


class TinyNet(nn.Module):
    """A user's own module (imported by path in the tests)."""

    def __init__(self, num_classes: int = 3, width: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def test_configs_cover_the_required_models():
    names = set(TV_CONFIGS)
    assert {
        "resnet18",
        "resnet50",
        "vgg16",
        "densenet121",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "vit_b_16",
    } <= names


@pytest.mark.parametrize("name", sorted(TV_CONFIGS))
def test_config_metadata_matches_the_weights(name):
    from torchvision.models import get_model_weights

    cfg = TV_CONFIGS[name]
    t = get_model_weights(cfg["arch"]).DEFAULT.transforms()
    assert cfg["input_size"] == [t.crop_size[0]] * 2 and cfg["resize_size"] == t.resize_size[0]
    assert cfg["mean"] == pytest.approx(t.mean) and cfg["std"] == pytest.approx(t.std)


def test_random_weights_metadata_from_torchvision():
    model = load_torchvision(
        "resnet18", weights=None, cam_layer="auto", input_size=[64, 64], num_classes=7
    )
    meta = meta_of(model)
    assert meta.cam_layer == "layer4" and meta.num_classes == 7 and meta.input_size == (64, 64)
    assert meta.mean == pytest.approx((0.485, 0.456, 0.406)) and meta.extra["resize_size"] == 256
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    # at 32 px layer4 is 1x1: auto takes the last layer that still has a spatial grid
    assert (
        meta_of(load_torchvision("resnet18", weights=None, input_size=SMALL)).cam_layer == "layer3"
    )


def test_missing_enum_weights_name_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_torchvision("resnet18", weights="IMAGENET1K_V1", download=False, input_size=SMALL)
    msg = str(err.value)
    assert (
        str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in msg
        and "model.checkpoint" in msg
    )


def test_cached_enum_weights_are_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    src = load_torchvision("resnet18", weights=None, input_size=SMALL)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(src.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = load_torchvision("resnet18", weights="IMAGENET1K_V1", download=False, input_size=SMALL)
    assert meta_of(model).weights == "IMAGENET1K_V1"
    assert torch.equal(model.fc.weight, src.fc.weight)


def test_unknown_arch_and_weights():
    with pytest.raises(ConfigError, match="Did you mean resnet18"):
        load_torchvision("resnet81", weights=None)
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        load_torchvision("resnet18", weights="IMAGENET_V9")
    with pytest.raises(ConfigError, match="cam_layer=layer5"):
        load_torchvision("resnet18", weights=None, cam_layer="layer5", input_size=SMALL)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return load_torchvision("resnet18", weights=None, num_classes=5, input_size=SMALL)


@pytest.mark.parametrize("form", ["state_dict", "wrapped", "full", "prefixed"])
def test_checkpoint_forms(tmp_path, trained, form):
    sd = trained.state_dict()
    obj = {
        "state_dict": sd,
        "wrapped": {"model_state_dict": sd, "epoch": 3},
        "full": trained,
        "prefixed": {"module." + k: v for k, v in sd.items()},
    }[form]
    path = tmp_path / "ck.pt"
    torch.save(obj, path)
    if form == "full":  # a pickled model runs code when unpickled: only when trusted
        with pytest.raises(ConfigError, match="set model.trust_checkpoint=true if you trust"):
            load_torchvision("resnet18", weights=None, checkpoint=str(path), input_size=SMALL)
    model = load_torchvision(
        "resnet18",
        weights=None,
        checkpoint=str(path),
        num_classes=5,
        input_size=SMALL,
        strip_prefix="module." if form == "prefixed" else None,
        trust_checkpoint=form == "full",
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), trained.eval()(x))
    assert meta_of(model).weights == "ck.pt" and meta_of(model).num_classes == 5
    if form == "wrapped":
        assert meta_of(model).extra["epoch"] == 3


def test_checkpoint_errors(tmp_path, trained):
    with pytest.raises(ConfigError, match="not found"):
        load_torchvision("resnet18", weights=None, checkpoint=str(tmp_path / "none.pt"))
    path = tmp_path / "ck.pt"
    torch.save({"module." + k: v for k, v in trained.state_dict().items()}, path)
    with pytest.raises(ConfigError, match="strip_prefix=module."):
        load_torchvision(
            "resnet18", weights=None, checkpoint=str(path), num_classes=5, input_size=SMALL
        )
    torch.save(trained.state_dict(), path)
    with pytest.raises(ConfigError, match=r"shape mismatch.*fc.weight.*num_classes"):
        load_torchvision(
            "resnet18", weights=None, checkpoint=str(path), num_classes=1000, input_size=SMALL
        )
    torch.save({"note": "hello"}, path)
    with pytest.raises(ConfigError, match="neither a model nor a state dict"):
        load_torchvision("resnet18", weights=None, checkpoint=str(path))
    with pytest.raises(ConfigError, match="both set"):
        load_torchvision("resnet18", weights="DEFAULT", checkpoint=str(path))


def test_user_module(tmp_path):
    torch.manual_seed(1)
    ref = TinyNet(num_classes=4)
    path = tmp_path / "net.pt"
    torch.save({"state_dict": ref.state_dict()}, path)
    model = load_module(
        "tests.bench.test_models.TinyNet",
        checkpoint=str(path),
        args={"num_classes": 4},
        input_size=[16, 16],
        mean=[0.5] * 3,
        std=[0.5] * 3,
        num_classes=4,
    )
    meta = meta_of(model)
    assert meta.cam_layer == "features" and meta.num_classes == 4 and meta.weights == "net.pt"
    assert torch.equal(model.head.weight, ref.head.weight)
    with pytest.raises(ConfigError, match="does not fit"):
        load_module(
            "tests.bench.test_models.TinyNet",
            checkpoint=str(path),
            input_size=[16, 16],
            mean=[0.5] * 3,
            std=[0.5] * 3,
        )
    with pytest.raises(ConfigError, match="num_classes=3 but"):
        load_module(
            "tests.bench.test_models.TinyNet",
            input_size=[16, 16],
            mean=[0.5] * 3,
            std=[0.5] * 3,
            num_classes=3,
            args={"num_classes": 4},
        )
    with pytest.raises(ConfigError, match="Did you mean TinyNet"):
        load_module(
            "tests.bench.test_models.TinyNett", input_size=[16, 16], mean=[0.5] * 3, std=[0.5] * 3
        )


def test_timm_absent_or_loads():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install timm"):
            load_timm("resnet18")
    else:
        assert meta_of(load_timm("resnet18", input_size=SMALL)).num_classes == 1000


def test_digits_cnn_checkpoint_loads():
    model = load_shapes_cnn(
        "results/reference/models/digits_cnn.pt", name="digits_cnn", num_classes=10
    )
    assert meta_of(model).num_classes == 10 and model(torch.zeros(1, 3, 112, 112)).shape == (1, 10)


def test_a_misspelt_timm_architecture_is_one_short_line():
    """Over a thousand timm names are not listed in the error: it says how many and where, and
    suggests by the start of the name (a typo in the family part of a long name)."""
    pytest.importorskip("timm")
    from bench.models.timm import load_timm

    with pytest.raises(ConfigError) as err:
        load_timm("deit_tinny", weights=None)
    text = str(err.value)
    assert "\n" not in text and len(text) < 300, text
    assert "listed by timm.list_models()" in text and "deit_tiny_patch16_224" in text, text
