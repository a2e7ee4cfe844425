"""model=timm and model=hf: what each loader derives from the model (input size, normalisation, CAM
layer, token layout), random weights offline, checkpoints and save_pretrained folders, one-line
errors; a job of each end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.api import compose
from bench.config.overrides import preflight
from bench.core.errors import ConfigError
from bench.core.layers import FeatureLayout
from bench.engine.run import run
from bench.models import HFClassifier, load_hf, load_timm, meta_of
from tests._transformers import FAMILIES, family_overrides, load_family
from tests.methods.conftest import make_method

timm = pytest.importorskip("timm", reason="model=timm needs the optional timm package")
transformers = pytest.importorskip("transformers", reason="model=hf needs transformers")

TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
HF_VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip

#: family -> (CAM layer, layout, mean) the loader must derive
DERIVED = {
    "timm_vit": ("blocks.1.norm1", FeatureLayout("nchw", 1), (0.5, 0.5, 0.5)),
    "timm_deit": ("blocks.1.norm1", FeatureLayout("nchw", 2), (0.485, 0.456, 0.406)),
    "timm_swin": ("norm", FeatureLayout("nhwc", None), (0.485, 0.456, 0.406)),
    "timm_convnext": ("norm_pre", FeatureLayout("nchw", None), (0.485, 0.456, 0.406)),
    "timm_resnet": ("layer4", FeatureLayout("nchw", None), (0.485, 0.456, 0.406)),
    "timm_efficientnet": ("bn2", FeatureLayout("nchw", None), (0.485, 0.456, 0.406)),
    "hf_vit": ("hf.vit.layers.1.layernorm_before", FeatureLayout("nchw", 1), (0.5, 0.5, 0.5)),
    "hf_deit": ("hf.deit.layers.1.layernorm_before", FeatureLayout("nchw", 2), (0.5, 0.5, 0.5)),
    "hf_swin": ("hf.swin.layernorm", FeatureLayout("nchw", 0), (0.5, 0.5, 0.5)),
    "hf_convnext": ("hf.convnext.encoder.stages.3", FeatureLayout("nchw", None), (0.5, 0.5, 0.5)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_loader_derives_layer_layout_and_preprocessing(family):
    model = load_family(family, num_classes=7)
    meta = meta_of(model)
    layer, layout, mean = DERIVED[family]
    side = FAMILIES[family][1]
    assert (meta.cam_layer, meta.layout, meta.input_size) == (layer, layout, (side, side))
    assert meta.mean == pytest.approx(mean) and meta.num_classes == 7
    assert meta.weights == "random" and not model.training
    with torch.no_grad():
        assert model(torch.zeros(2, 3, side, side)).shape == (2, 7)
    # what the config reads before the model exists is what the model says
    cfg = compose(*family_overrides(family, 7))
    assert cfg.model.input_size == [side, side] and cfg.model.mean == pytest.approx(list(mean))


def test_random_weights_are_seeded_and_a_checkpoint_round_trips(tmp_path):
    a = load_timm("vit_tiny_patch16_224", num_classes=3, kwargs=TINY_VIT)
    b = load_timm("vit_tiny_patch16_224", num_classes=3, kwargs=TINY_VIT)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))  # the same random weights in every process
        for p in a.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": a.state_dict(), "epoch": 4}, path)
    c = load_timm("vit_tiny_patch16_224", num_classes=3, kwargs=TINY_VIT, checkpoint=str(path))
    with torch.no_grad():
        assert torch.equal(c(x), a(x)) and not torch.equal(c(x), b(x))
    assert meta_of(c).weights == "vit.pth" and meta_of(c).extra["epoch"] == 4


def test_timm_errors_are_one_line():
    cases = [
        (dict(arch="vit_tiny_patch16_22"), r"^model.arch=vit_tiny_patch16_22 is not valid.*Did you mean vit_tiny_patch16_224"),
        (dict(arch="resnet18", weights="imagenet"), r"^model.weights=imagenet is not valid; accepted: null .* or pretrained"),
        (dict(arch="resnet18", weights="pretrained", checkpoint="x.pt"), "are both set"),
        (dict(arch="resnet18", kwargs={"pretrained_cfg": {}}), r"^model.kwargs.pretrained_cfg is not accepted"),
        (dict(arch="resnet18", kwargs={"img_sise": 32}), r"^model.kwargs=\{'img_sise': 32\}: timm resnet18 does not take them"),
        (dict(arch="vit_tiny_patch16_224", kwargs=TINY_VIT, input_size=[64, 64]),
         r"^model.input_size=\[64, 64\] but timm vit_tiny_patch16_224 was built for \[32, 32\] px"),
        (dict(arch="resnet18", input_size=[64, 64], probabilities="softmax2"), r"^model.probabilities=softmax2 is not valid"),
    ]  # fmt: skip
    for kwargs, pattern in cases:
        with pytest.raises(ConfigError, match=pattern) as err:
            load_timm(**kwargs)
        assert "\n" not in str(err.value)


def _save_hf_vit(folder: Path, mean: float = 0.4) -> HFClassifier:
    """A tiny random HF ViT and its image processor (mean/std of its own) saved to ``folder``."""
    model = load_hf(config="vit", overrides=HF_VIT, num_classes=4)
    with torch.no_grad():  # weights unlike a fresh random init
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.hf.save_pretrained(folder)
    size = {"height": 32, "width": 32}
    transformers.ViTImageProcessor(
        size=size, image_mean=[mean] * 3, image_std=[0.2] * 3
    ).save_pretrained(folder)
    return model


def test_an_hf_vit_saved_and_loaded_back_gives_the_same_logits_and_maps(tmp_path):
    saved = _save_hf_vit(tmp_path / "vit")
    loaded = load_hf(path=str(tmp_path / "vit"))
    meta = meta_of(loaded)
    assert meta.weights == "vit" and meta.num_classes == 4 and meta.input_size == (32, 32)
    assert meta.mean == pytest.approx((0.4,) * 3) and meta.std == pytest.approx((0.2,) * 3)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 3])
    with torch.no_grad():
        assert torch.allclose(loaded(x), saved(x), atol=1e-6)
    for name in ("gradcam", "attention_rollout", "raw_attention", "integrated_gradients"):
        layer = [f"model.cam_layer={meta.cam_layer}"]
        method = make_method(name, "none", overrides=layer)
        assert torch.allclose(method(loaded, x, t), method(saved, x, t), atol=1e-5), name
    # the job reads the processor's size, mean and std before the model exists
    cfg = compose("model=hf", f"model.path={tmp_path / 'vit'}")
    assert cfg.model.mean == pytest.approx([0.4] * 3) and cfg.model.input_size == [32, 32]


def test_hf_multi_label_config_means_a_sigmoid_head(tmp_path):
    over = {**HF_VIT, "problem_type": "multi_label_classification"}
    assert meta_of(load_hf(config="vit", overrides=over)).probabilities == "sigmoid"
    assert meta_of(load_hf(config="vit", overrides=HF_VIT)).probabilities == "softmax"


def test_hf_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        (dict(), r"^model.path=None and model.config=None; accepted: exactly one of them"),
        (dict(config="vitt"), r"^model.config=vitt is not valid; accepted: .*Did you mean vit"),
        (dict(config="vit", overrides={"hiden_size": 8}), r"^model.overrides.hiden_size is not a key of ViTConfig. Did you mean hidden_size"),
        (dict(path=str(tmp_path / "empty")), r"has no config.json; accepted: a folder written by save_pretrained"),
        (dict(path=str(tmp_path / "none")), "model.path="),
        (dict(config="vit", overrides=HF_VIT, input_size=[64, 64]), r"fails on a 64x64 input: .*set model.input_size"),
    ]  # fmt: skip
    for kwargs, pattern in cases:
        with pytest.raises(ConfigError, match=pattern) as err:
            load_hf(**kwargs)
        assert "\n" not in str(err.value)


def test_a_folder_with_pickled_weights_only_is_refused(tmp_path):
    saved = _save_hf_vit(tmp_path / "vit")
    (tmp_path / "vit" / "model.safetensors").unlink()
    torch.save(saved.hf.state_dict(), tmp_path / "vit" / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"^model.path=.*vit: "):
        load_hf(path=str(tmp_path / "vit"))


@pytest.mark.parametrize("family", ["timm_deit", "hf_swin"])
def test_a_job_on_a_transformer_end_to_end(tmp_path, family):
    """The shapes benchmark at 96 px on a tiny timm DeiT / HF Swin: the preflight, the job, its
    record (what the loader derived) and the rows."""
    over = {
        "timm_deit": ["model=timm", "model.arch=deit_tiny_distilled_patch16_224",
                      "model.kwargs={img_size: 96, patch_size: 16, depth: 1, embed_dim: 16, num_heads: 2}"],
        "hf_swin": ["model=hf", "model.config=swin",
                    "model.overrides={image_size: 96, patch_size: 4, window_size: 3, embed_dim: 8, "
                    "depths: [1, 1], num_heads: [1, 1]}"],
    }[family]  # fmt: skip
    args = [*over, "model.num_classes=8", "method=gradcam", "dataset.limit=2", "batch_size=2",
            "metric=[deletion,pointing_game,road_morf]", "metric.deletion.step=2304",
            "metric.road_morf.fractions=[0.5]"]  # fmt: skip
    preflight(args)
    record = run(compose(*args, resolve=False), tmp_path / "job")
    assert record["status"] == "completed" and record["rows"] == 2 * 4  # road: .probability too
    model = json.loads((tmp_path / "job" / "record.json").read_text())["model"]
    assert model["input_size"] == [96, 96] and model["layout"]["prefix_tokens"] in (2, 0)
    assert record["config"]["model"]["mean"] == model["mean"]


def test_a_swin_job_of_an_attention_method_is_skipped_in_a_sweep(tmp_path):
    """unfit=skip (what a glob sweep over methods sets): the record says why, in one line."""
    args = [*family_overrides("timm_swin", 8), "model.kwargs.img_size=96", "dataset.limit=1",
            "batch_size=1", "metric=[sparseness]"]  # fmt: skip
    record = run(
        compose(*args, "method=attention_rollout", "unfit=skip", resolve=False), tmp_path / "a"
    )
    assert record["status"] == "skipped" and record["need"] == "attention"
    assert record["reason"].startswith(
        "method AttentionRollout cannot apply to model swin_tiny_patch4_window7_224 "
        "(SwinTransformer) (needs attention): its attention is windowed (WindowAttention)"
    )
    assert run(compose(*args, "method=gradcam", resolve=False), tmp_path / "b")["rows"] == 1
