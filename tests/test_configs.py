"""Every config file of every group composes AND instantiates; base files are not options.

The config tree is the registry (DESIGN.md): a file in ``conf/<group>/`` is an option users type,
except the ``_``-prefixed base files the others extend through ``defaults:``.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torch import nn

from bench import ROOT
from bench.api import compose
from bench.config.overrides import GROUPS, check_overrides, options
from bench.config.validate import user_error
from bench.core.batch import Sample, collate
from bench.core.context import Context
from bench.core.errors import ConfigError
from bench.data.scenes import ScenesDataset
from bench.data.shapes import ShapesDataset
from bench.engine.build import build_dataset
from bench.methods.attention import ViTGradCAM
from bench.methods.base import Method
from bench.methods.cam import GradCAM
from bench.methods.gradient import Gradient
from bench.metrics.base import Category, Direction, Metric
from bench.models import meta_of
from tests.bench._fixtures import MEAN, STD, write_coco, write_folder, write_imagenet, write_voc

#: Settings that keep one pass of every metric over two images to a few seconds.
FAST_METRICS = {
    "smooth_mprt": ["noise_samples=2"],
    "infidelity": ["n_perturb_samples=2"],
    "max_sensitivity": ["n_perturb_samples=2"],
    "deletion": ["step=1792"],
    "insertion": ["step=1792"],
    "pixel_flipping_abc": ["step=1792"],
    "pixel_flipping_morf": ["step=1792"],
    "pixel_flipping_lerf": ["step=1792"],
    "road_abc": ["fractions=[0.5]"],
    "road_morf": ["fractions=[0.5]"],
    "road_lerf": ["fractions=[0.5]"],
    **{name: ["max_steps=8"] for name in ("dauc", "iauc", "dc", "ic")},
}


class TinyNet(nn.Module):
    """A user's own module for ``model=custom`` (imported by path)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def test_base_files_exist_are_not_options_and_sweeps_skip_them():
    bases = {g: sorted(p.stem for p in (ROOT / "conf" / g).glob("_*.yaml")) for g in GROUPS}
    assert {"_torchvision", "_embedded_cnn"} <= set(bases["model"])
    assert {"_road", "_comparison", "_model_randomisation"} <= set(bases["metric"])
    for group, names in bases.items():
        assert not set(names) & set(options(group)), group
    with pytest.raises(ConfigError, match="model=_torchvision is not valid"):
        check_overrides(["model=_torchvision"])
    assert check_overrides(["-m", "metric=glob(road*)"]) == [
        "-m",
        "metric=glob([road*],exclude=[_*])",
    ]


@pytest.mark.parametrize("name", options("metric"))
def test_every_metric_file_instantiates_runs_and_declares_its_metadata(name):
    first = (ROOT / "conf" / "metric" / f"{name}.yaml").read_text().splitlines()[0]
    assert first == f"# @package metric.{name}", "without it Hydra merges metric files silently"
    extra = [f"metric.{name}.{kv}" for kv in FAST_METRICS.get(name, [])]
    cfg = compose(f"metric=[{name}]", *extra)
    assert list(cfg.metric) == [name]
    metric = instantiate(cfg.metric[name])
    assert isinstance(metric, Metric)
    assert isinstance(metric.category, Category) and isinstance(metric.higher_is_better, bool)
    assert len(metric.citation) > 20 and all(
        isinstance(d, Direction) for d in metric.directions().values()
    )
    json.dumps(metric.meta())  # recorded in every run
    model = instantiate(cfg.model)
    # a metric that needs partner classes (class sensitivity) gets multi-object scenes
    data = ScenesDataset("test", size=2) if "partners" in metric.requires else None
    data = data or ShapesDataset("test", size=2)
    batch = collate([data[0], data[1]])
    ctx = Context(model=model, method=Gradient(), seed=0)
    maps = Gradient()(model, batch.images, batch.targets)
    out = metric(ctx, batch, maps)  # the base class refuses a score key without a direction
    assert out.scores and set(out.scores) <= set(metric.directions())


def _model_overrides(name: str) -> list[str]:
    node = OmegaConf.to_container(compose(f"model={name}", resolve=False).model)
    if node["_target_"].endswith("load_torchvision"):
        arch = [] if node["arch"] != "???" else ["model.arch=resnet18"]
        small = [] if str(node["arch"]).startswith("vit_") else ["model.input_size=[64,64]"]
        return [*arch, "model.weights=null", *small]
    if node["_target_"].endswith("load_module"):
        return [
            "trust_code=true",
            "model.module=tests.test_configs.TinyNet",
            "model.input_size=[32,32]",
            f"model.mean={MEAN}",
            f"model.std={STD}",
        ]
    if node["_target_"].endswith("load_timm"):
        return ["model.arch=resnet18"]
    if node["_target_"].endswith("load_hf"):  # a tiny ViT built from its config class
        return [
            "model.config=vit",
            "model.overrides={image_size: 32, patch_size: 8, hidden_size: 16, "
            "num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32}",
        ]
    return []


#: Full-size architectures whose random initialisation alone takes seconds: make test-all.
LARGE_MODELS = {"vgg16", "vit_b_16", "resnet50", "densenet121", "convnext_tiny"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in LARGE_MODELS else n for n in options("model")],
)
def test_every_model_file_instantiates(name):
    cfg = compose(f"model={name}", *_model_overrides(name))
    if cfg.model._target_.endswith("load_timm"):
        pytest.importorskip("timm", reason="model=timm needs the optional timm package")
    if cfg.model._target_.endswith("load_hf"):
        pytest.importorskip("transformers", reason="model=hf needs the optional transformers")
    model = instantiate(cfg.model)
    meta = meta_of(model)
    assert not model.training and meta.num_classes >= 2
    if cfg.model.cam_layer not in (None, "auto"):
        assert meta.cam_layer == cfg.model.cam_layer
    if meta.cam_layer is not None:
        assert meta.cam_layer in dict(model.named_modules())
    if cfg.model._target_.endswith("load_torchvision"):  # random weights: no file was read
        assert meta.weights == "random" and meta.num_classes == cfg.model.num_classes
    # the shipped CAM layer works: Grad-CAM (on the token grid for a ViT) gives finite maps
    cam = (
        ViTGradCAM(meta.cam_layer) if "encoder_layer" in meta.cam_layer else GradCAM(meta.cam_layer)
    )
    cam.check(model)
    images = torch.randn(2, 3, *meta.input_size, generator=torch.Generator().manual_seed(0))
    maps = cam(model, images, torch.tensor([0, 1]))
    assert maps.shape == (2, *meta.input_size) and torch.isfinite(maps).all()


def test_timm_without_the_package_is_a_one_line_error():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(Exception) as err:  # Hydra wraps it; the runner unwraps it
            instantiate(compose("model=timm", "model.arch=resnet18").model)
        assert "needs the timm package" in str(user_error(err.value))
    else:
        pytest.skip("timm is installed")


def _dataset_overrides(name: str, tmp) -> list[str]:
    if name == "voc07":
        return [f"dataset.root={write_voc(tmp)}"]
    if name in ("coco14", "coco17"):
        return [f"dataset.root={write_coco(tmp, year=2000 + int(name[-2:]))}"]
    if name == "imagenet":
        val, boxes = write_imagenet(tmp)
        return [f"dataset.root={val}", f"dataset.boxes={boxes}"]
    if name == "folder":
        return [f"dataset.root={write_folder(tmp)}"]
    return ["dataset.size=3"] if name == "shapes" else []


@pytest.mark.parametrize("name", options("dataset"))
def test_every_dataset_file_instantiates(name, tmp_path):
    cfg = compose(f"dataset={name}", "dataset.limit=2", *_dataset_overrides(name, tmp_path))
    base, selected, subset = build_dataset(cfg.dataset, seed=0)
    assert subset["limit"] == 2 and 1 <= len(selected) <= 2 and base.name
    assert isinstance(selected[0], Sample) and selected[0].image.shape[0] == 3


@pytest.mark.parametrize("name", options("method"))
def test_every_method_file_instantiates(name):
    method = instantiate(compose(f"method={name}").method)
    assert isinstance(method, Method)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes_with_known_options(name):
    cfg = compose(f"experiment={name}", resolve=False, hydra=True)
    assert set(cfg.metric) <= set(options("metric")), name
    methods = cfg.hydra.sweeper.params.method
    if not methods.startswith("glob("):
        assert set(methods.split(",")) <= set(options("method")), name


def constructor_keys(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` passed to base classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(names))


@pytest.mark.parametrize(
    "group,name",
    [("method", n) for n in options("method")] + [("metric", n) for n in options("metric")],
)
def test_every_constructor_argument_is_in_the_yaml(group, name):
    """So any setting is a plain ``key=value`` override, never Hydra's ``+key=value``."""
    cfg = compose(f"{group}={name}" if group == "method" else f"metric=[{name}]", resolve=False)
    node = cfg.method if group == "method" else cfg.metric[name]
    missing = [k for k in constructor_keys(get_class(node._target_)) if k not in node]
    assert not missing, f"conf/{group}/{name}.yaml lacks {missing}"


def test_a_method_setting_is_a_plain_override():
    cfg = compose("method=gradcam", "method.relu=after_upsample")
    assert instantiate(cfg.method).relu == "after_upsample"
