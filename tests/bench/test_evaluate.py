"""The Python API (bench.engine.evaluate): the same scores as a run, user maps, one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from bench.api import compose
from bench.core.batch import collate
from bench.core.errors import ConfigError
from bench.engine.build import build_dataset
from bench.engine.evaluate import evaluate
from bench.engine.io import ROW_COLUMNS
from bench.engine.run import run

OVERRIDES = ("method=gradcam", "dataset.limit=6", "metric=[deletion,pointing_game]")


@pytest.fixture(scope="module")
def shapes() -> dict:
    """The shapes CNN and the first 6 test images, labels, boxes, ids and sizes, exactly as the
    run of ``OVERRIDES`` builds them."""
    cfg = compose(*OVERRIDES)
    model = instantiate(cfg.model)
    base, dataset, _ = build_dataset(cfg.dataset, cfg.seed)
    batch = collate([dataset[i] for i in range(len(dataset))])
    return {"model": model, "base": base, "batch": batch}


def _evaluate(shapes: dict, **kwargs) -> pd.DataFrame:
    b = shapes["batch"]
    args = {
        "boxes": b.boxes,
        "ids": b.ids,
        "orig_sizes": b.orig_sizes,
        "dataset": shapes["base"].name,
        "split": shapes["base"].split,
        **kwargs,
    }
    return evaluate(shapes["model"], b.images, b.targets, **args)


def test_the_api_gives_the_scores_of_the_equivalent_run(tmp_path, shapes):
    record = run(compose(*OVERRIDES, resolve=False), tmp_path / "job")
    assert record["status"] == "completed"
    cli = pd.read_csv(
        tmp_path / "job" / "scores.csv", dtype={"image_id": str}, keep_default_na=False
    )
    api = _evaluate(shapes, methods=["gradcam"], metrics=["deletion", "pointing_game"])
    assert list(api.columns) == ROW_COLUMNS and len(api) == len(cli) == 12
    key = ["image_id", "metric"]
    cli, api = (
        cli.sort_values(key).reset_index(drop=True),
        api.sort_values(key).reset_index(drop=True),
    )
    for col in ("model", "weights", "dataset", "split", "image_id", "target", "method", "metric"):
        assert cli[col].astype(str).tolist() == api[col].astype(str).tolist(), col
    np.testing.assert_array_equal(api["value"], cli["value"].astype(float))  # one builder, one loop
    assert api["flag"].tolist() == cli["flag"].tolist()
    assert api["value"].nunique() > 2  # real scores, not a constant
    # batches of 4 (a short last one) give the same rows as one batch of 6
    small = _evaluate(shapes, methods="gradcam", metrics="pointing_game", batch_size=4)
    one = api[api["metric"] == "pointing_game"].set_index("image_id")["value"]
    assert small.set_index("image_id")["value"].reindex(one.index).tolist() == one.tolist()


def test_user_maps_are_scored_like_a_methods_maps(shapes):
    b = shapes["batch"]
    ref = _evaluate(shapes, methods="gradient", metrics=["deletion", "pointing_game"])
    # the method's own maps, computed outside, give the same rows under the name of the dict key
    from bench.methods.gradient import Gradient

    maps = Gradient(reduction="max_abs", abs=True)(shapes["model"], b.images, b.targets)
    mine = _evaluate(shapes, maps={"gradient": maps.numpy()}, metrics=["deletion", "pointing_game"])
    np.testing.assert_allclose(mine["value"], ref["value"], atol=1e-6, rtol=0)
    assert (mine["method"] == "gradient").all()
    # one array: rows named "maps"; a constant map is flagged like in a run; default ids 0..N-1
    flat = torch.rand(6, 112, 112, generator=torch.Generator().manual_seed(0))
    flat[2] = 0.5
    df = evaluate(
        shapes["model"],
        b.images,
        b.targets.tolist(),
        maps=flat,
        metrics="pointing_game",
        boxes=b.boxes,
        orig_sizes=b.orig_sizes,
    )
    assert (df["method"] == "maps").all() and df["image_id"].tolist() == [str(i) for i in range(6)]
    assert df["flag"].tolist()[2] == "constant_map" and (df["dataset"] == "user").all()
    # methods and maps together: both sets of rows
    both = _evaluate(shapes, methods=["random"], maps=flat, metrics="pointing_game")
    assert both.groupby("method").size().to_dict() == {"maps": 6, "random": 6}


def test_a_bare_model_and_method_args(shapes):
    """A model without bench_meta: its CAM layer found as ``cam_layer: auto`` finds it, rows named
    after its class; per-method and per-metric overrides reach the configs."""
    from bench.models.embedded import ShapesCNN

    bare = ShapesCNN()
    bare.load_state_dict(shapes["model"].state_dict())
    b = shapes["batch"]
    df = evaluate(
        bare,
        b.images[:2],
        b.targets[:2],
        methods=["gradcam", "integrated_gradients"],
        metrics=["deletion"],
        method_args={"integrated_gradients": {"n_steps": 4}},
        metric_args={"step": 1792},
    )
    ref = _evaluate(shapes, methods=["gradcam"], metrics=["deletion"], metric_args={"step": 1792})
    assert (df["model"] == "ShapesCNN").all() and (df["weights"] == "").all()
    got = df[df["method"] == "gradcam"]["value"].to_numpy()
    np.testing.assert_allclose(got, ref["value"].to_numpy()[:2], atol=1e-6)
    assert len(df) == 4


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"methods": ["gradcm"]}, ["method=gradcm", "accepted:", "Did you mean gradcam"]),
        ({"metrics": ["delition"]}, ["metric=delition", "accepted:", "deletion"]),
        ({"methods": ["gradcam"], "labels": [0, 1]}, ["labels has 2 values", "images has 6"]),
        ({"methods": ["gradcam"], "labels": [0, 1, 2, 3, 4, 99]}, ["labels[5]=99", "0..7"]),
        (
            {"methods": ["gradcam"], "images": torch.zeros(6, 112, 112)},
            ["images is", "[N, 3, H, W]"],
        ),
        ({"maps": torch.zeros(6, 50, 50)}, ["maps is", "[6, 112, 112]"]),
        ({"maps": None}, ["nothing to score"]),
        ({"methods": ["gradcam"], "boxes": None}, ["metric=pointing_game needs boxes"]),
        ({"methods": ["gradcam"], "boxes": [torch.zeros(1, 4)] * 5}, ["boxes has 5 entries"]),
        ({"methods": ["gradcam"], "ids": ["a"] * 6}, ["ids has 'a' twice"]),
        ({"methods": ["gradcam"], "method_args": {"relu": "often"}}, ["relu=often", "accepted"]),
        ({"methods": ["gradcam"], "method_args": {"relus": 1}}, ["relus is not a key", "relu"]),
        ({"methods": ["gradcam"], "device": "tpu"}, ["device=tpu"]),
        ({"methods": ["gradcam"], "cam_layer": "nope"}, ["nope is not a submodule"]),
        ({"maps": torch.rand(6, 112, 112), "metrics": ["mprt"]}, ["metric=mprt re-runs"]),
        (
            {"methods": ["gradcam"], "metrics": ["road_abc"], "mean": [0.5, 0.5]},
            ["mean=[0.5, 0.5]"],
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_value(shapes, kwargs, words):
    b = shapes["batch"]
    args = {"labels": b.targets, "images": b.images, "metrics": ["pointing_game"], "boxes": b.boxes}
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        evaluate(shapes["model"], args.pop("images"), args.pop("labels"), **args)
    text = str(info.value)
    assert "\n" not in text and all(w in text for w in words), text


def test_the_normalisation_is_asked_for_when_a_metric_needs_it(shapes):
    from bench.models.embedded import ShapesCNN

    b = shapes["batch"]
    with pytest.raises(ConfigError, match=r"pass mean=\[r, g, b\] and std") as info:
        evaluate(ShapesCNN(), b.images[:1], b.targets[:1], methods="random", metrics="road_morf")
    assert "\n" not in str(info.value)


def test_class_sensitivity_through_the_api_equals_the_run(tmp_path):
    """The scenes pairs' partner class and region passed as ``partners`` / ``partner_masks``."""
    overrides = (
        "dataset=scenes",
        "model=scenes_cnn",
        "method=gradcam",
        "dataset.limit=5",
        "metric=[class_sensitivity]",
    )
    record = run(compose(*overrides, resolve=False), tmp_path / "job")
    assert record["status"] == "completed", record.get("error")
    cli = pd.read_csv(tmp_path / "job" / "scores.csv", dtype={"image_id": str})
    cfg = compose(*overrides)
    base, dataset, _ = build_dataset(cfg.dataset, cfg.seed)
    b = collate([dataset[i] for i in range(len(dataset))])
    model = instantiate(cfg.model)

    def scores(**pairs):
        return evaluate(
            model, b.images, b.targets, methods="gradcam", metrics="class_sensitivity", **pairs
        )

    api = scores(masks=b.masks, partners=b.partners, partner_masks=b.partner_masks, ids=b.ids)
    key = ["image_id", "metric"]
    cli, api = (d.sort_values(key).reset_index(drop=True) for d in (cli, api))
    assert api["metric"].tolist() == cli["metric"].tolist() and len(api) >= 5
    np.testing.assert_allclose(api["value"], cli["value"], atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="metric=class_sensitivity needs partners"):
        scores(masks=b.masks)
    with pytest.raises(ConfigError, match="partners was given without partner_masks"):
        scores(masks=b.masks, partners=b.partners)
    with pytest.raises(ConfigError, match=r"partners\[0\]=.*label"):
        scores(masks=b.masks, partners=b.targets, partner_masks=b.partner_masks)
