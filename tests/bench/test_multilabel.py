"""Multi-label data of one's own: several labels per image (``3;7``), one sample per (image, label)
with its own masks, class sensitivity on it, and a sigmoid head whose probabilities the metrics
and methods read (and the protocols that need a softmax refuse)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from bench.api import compose
from bench.core.batch import Sample, collate
from bench.core.context import Context
from bench.core.errors import ConfigError
from bench.data.folder import FolderDataset
from bench.engine.build import make_cell
from bench.engine.run import run
from bench.methods.gradient import Gradient
from bench.methods.perturbation import probabilities
from bench.metrics.faithfulness import Deletion
from bench.metrics.road import RoadMoRF
from bench.models import ModelMeta
from tests.bench._fixtures import MEAN, STD, jpeg

SIDE = 32
#: label -> the columns its mask covers in every image (left half: 1, right half: 2, top: 0)
REGIONS = {0: (slice(0, 10), slice(None)), 1: (slice(None), slice(0, 20)), 2: (slice(None), slice(20, 40))}  # fmt: skip


class TinyNet(nn.Module):
    """A user's own multi-label classifier (a sigmoid per class, declared in its config)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def write_multilabel(root):
    """Three 30 x 40 images: im0 labelled 1;2 in one row (a mask each), im1 labelled 2 and 0 on
    two rows, im2 labelled 1 alone; every mask a distinct region of its label."""
    for i in range(3):
        jpeg(root / f"im{i}.jpg", 40, 30, seed=40 + i)
        for label, region in REGIONS.items():
            mask = np.zeros((30, 40), dtype=np.uint8)
            mask[region] = 255
            Image.fromarray(mask).save(root / f"im{i}_{label}.png")
    (root / "labels.csv").write_text(
        "image,label,mask\n"
        "im0.jpg,1;2,im0_1.png;im0_2.png\n"
        "im1.jpg,2,im1_2.png\n"
        "im1.jpg,0,im1_0.png\n"
        "im2.jpg,1,im2_1.png\n"
    )
    return root


def test_one_sample_per_image_and_label_with_its_own_masks(tmp_path):
    ds = FolderDataset(str(write_multilabel(tmp_path)), [30, 40], MEAN, STD, num_classes=4)
    assert ds.sample_ids == ["im0:1", "im0:2", "im1:2", "im1:0", "im2"]
    assert ds.fields == {"masks", "partners"}
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch.targets.tolist() == [1, 2, 2, 0, 1]
    for i, label in enumerate(batch.targets.tolist()):
        expected = torch.zeros(30, 40, dtype=torch.bool)
        expected[REGIONS[label]] = True
        assert torch.equal(batch.masks[i], expected), ds.sample_ids[i]
    # partners: the image's next label (cyclically) with its mask; a lone label has none
    assert batch.partners.tolist() == [2, 1, 0, 2, 1]
    assert torch.equal(batch.partner_masks[0], batch.masks[1])
    assert torch.equal(batch.partner_masks[3], batch.masks[2])
    assert not batch.partner_masks[4].any()


@pytest.mark.parametrize(
    "rows,pattern",
    [
        ("image,label,x0,y0,x1,y1\nim0.jpg,1;2,0,0,5,5\n", r"label=1;2 names 2 labels with a box; accepted: one mask per label"),
        ("image,label,mask\nim0.jpg,1;2,im0_1.png\n", r"label=1;2 names 2 labels with 1 mask\(s\)"),
        ("image,label\nim0.jpg,1;\n", r"the label is empty \(label='1;'\); accepted: .* several separated by ';'"),
        ("image,label\nim0.jpg,1;9\n", r"label=9 is not a class; accepted: 0..3"),
    ],
)  # fmt: skip
def test_bad_multi_label_rows_are_one_line(tmp_path, rows, pattern):
    write_multilabel(tmp_path)
    (tmp_path / "labels.csv").write_text(rows)
    with pytest.raises(ConfigError, match=r"labels.csv:2: " + pattern):
        FolderDataset(str(tmp_path), [30, 40], MEAN, STD, num_classes=4)


def _model(probabilities: str) -> nn.Module:
    model = TinyNet().eval()
    model.bench_meta = ModelMeta("tiny", "random", "features", (SIDE, SIDE), (0.5,) * 3, (0.25,) * 3, 4,
                                 probabilities=probabilities)  # fmt: skip
    return model


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_the_metrics_and_methods_read_the_declared_probabilities(head):
    model = _model(head)
    x = torch.randn(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 2, 3])
    with torch.no_grad():
        logits = model(x)
    p = logits.sigmoid() if head == "sigmoid" else logits.softmax(1)
    ctx = Context(model=model, chunk_size=8)
    assert ctx.probabilities == head and torch.allclose(ctx.probs(logits), p)
    assert torch.allclose(probabilities(model, x), p)  # RISE, LIME, SHAP, feature ablation
    batch = collate([_sample(x[i], int(t[i])) for i in range(3)])
    curve = Deletion(step=256, target="label").curve(ctx, batch, Gradient()(model, x, t))
    assert torch.allclose(curve[:, 0], p.gather(1, t[:, None])[:, 0], atol=1e-6)


def _sample(image, target):
    return Sample(image=image, target=target, id=str(target))


def test_a_protocol_that_needs_a_softmax_refuses_a_sigmoid_head():
    road = RoadMoRF(mean=[0.5] * 3, std=[0.25] * 3, fractions=[0.5])
    assert road.unfit_head("softmax") is None
    with pytest.raises(ConfigError, match=r"^metric=road_morf \(RoadMoRF\) cannot score model tiny: its protocol reads a model with softmax probabilities and the model declares model.probabilities=sigmoid"):  # fmt: skip
        make_cell(_model("sigmoid"), Gradient(), "gradient", {"road_morf": road}, {"model": "tiny"})
    make_cell(_model("softmax"), Gradient(), "gradient", {"road_morf": road}, {"model": "tiny"})
    assert Deletion().unfit_head("sigmoid") is None


def test_a_multi_label_job_end_to_end(tmp_path):
    """model=custom with a sigmoid head on the folder: one row per (image, label) and metric,
    class sensitivity scored on the images with two labels (the lone label's pair flagged)."""
    root = write_multilabel(tmp_path / "data")
    args = [
        "model=custom", "trust_code=true", "model.module=tests.bench.test_multilabel.TinyNet",
        f"model.input_size=[{SIDE},{SIDE}]", f"model.mean={MEAN}", f"model.std={STD}",
        "model.probabilities=sigmoid", "model.cam_layer=features.1", "dataset=folder",
        f"dataset.root={root}", "method=gradcam", "batch_size=5",
        "metric=[pointing_game,class_sensitivity,deletion]", "metric.pointing_game.region=masks",
        "metric.deletion.step=256",
    ]  # fmt: skip
    record = run(compose(*args, resolve=False), tmp_path / "job")
    assert record["status"] == "completed" and record["model"]["probabilities"] == "sigmoid"
    rows = pd.read_csv(tmp_path / "job" / "scores.csv")
    ids = ["im0:1", "im0:2", "im1:2", "im1:0", "im2"]
    for metric in ("pointing_game", "class_sensitivity", "deletion"):
        assert sorted(rows[rows.metric == metric].image_id) == sorted(ids), metric
    sens = rows[rows.metric == "class_sensitivity"].set_index("image_id")
    assert sens.value.drop("im2").notna().all() and np.isnan(sens.value["im2"])
    assert sens.flag["im2"] == "degenerate"
    with pytest.raises(ConfigError, match=r"cannot score model custom: its protocol reads a model with softmax"):  # fmt: skip
        run(compose(*args[:-3], "metric=[road_morf]", resolve=False), tmp_path / "road")
