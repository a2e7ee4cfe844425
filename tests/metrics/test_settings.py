"""Every setting of every conf/metric/*.yaml reaches the scores (issue 28, "every setting reaches
the code"); the knobs that only bound memory or bookkeeping leave them alone.

Generated from the configs (the ``_``-prefixed base files are covered through the metrics that
extend them): each key of each composed metric node is changed to a value derived from it
(tests/_settings_helpers.py) and the output (per-image scores and curves) must change. A key added
to a YAML later is enumerated here too: it must change the output (or get a value in OVERRIDES, or
a reason in EXCLUDED), so the test keeps up with the configs. The output is taken on the trained
embedded CNN and two 32 px images with boxes, masks and partner classes, and maps built to show
every setting (signed, with ties, a maximum exactly 2 px from the first box, a plateau that
smoothing moves the maximum to); sanity checks re-run a signed gradient.

A variant is scored with the same context, batch and maps as the YAML's values, so a setting left
out of the key of a metric family's shared curves (``OrderCurves``: ROAD, pixel flipping) reads
the curves of other settings and fails here too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor, nn

from bench import ROOT
from bench.api import compose
from bench.config.overrides import options
from bench.core.batch import Batch
from bench.core.context import Context
from bench.methods.gradient import Gradient
from tests._settings_helpers import (
    Path,
    accepts,
    candidates,
    dotted,
    flatten_output,
    get,
    leaves,
    same_output,
    with_values,
)
from tests.methods.conftest import make_images

METRICS = options("metric")
SIDE = 32
#: Settings that keep a metric fast on two 32 px images (applied where the metric has them).
FAST = {
    "noise_samples": 2,
    "n_perturb_samples": 2,
    "max_steps": 8,
    "fractions": [0.5],
    "hog_cell": 8,  # HOG needs maps of hog_cell x hog_block px per side
    "hog_block": 2,
}
#: Knobs that bound memory or bookkeeping, never the scores, with values to try (besides the run's
#: own chunk size, ``Context.chunk_size``, tried for every metric). Spelled out here, so that a
#: score-changing key slipped into a list of knobs elsewhere is not excused by it.
KNOBS: dict[str, list[Any]] = {
    "batch_size": [1, 5, None],
    "internal_batch_size": [1, 5, None],
    # ROAD's solver iterations between convergence checks (null: 1 on a CPU)
    "check_every": [1, 3],
}
#: The run's chunk sizes tried: 3 splits every metric's perturbed images unevenly.
CHUNKS = (64, 3)
#: The permuted-label model's stand-in: the trained model itself (its maps equal the original's).
TRAINED = str(ROOT / "results" / "reference" / "models" / "shapes_cnn.pt")

#: Values where none can be derived from the YAML's (or a derived one is too small a change to
#: show), by (metric or "*", dotted key).
OVERRIDES: dict[tuple[str, str], list[Any]] = {
    # null = 15 px per 224 px (2.1 px at 32 px): the first image's maximum, 2 px from its box,
    # is a hit; 0 = the maximum must lie on the object
    ("*", "tolerance"): [0.0],
    # null = the input's grid
    ("*", "map_size"): [[4, 4]],
    # auto = every layer with parameters; a list of module names
    ("*", "layers"): [["fc"]],
    # another model's weights
    ("data_randomisation", "checkpoint"): [TRAINED],
    # ROAD's tie-breaker: scaled by 2 it still orders tied pixels the same and never reorders the
    # maps' distinct levels; 1.0 does
    ("*", "tie_noise"): [1.0],
    # ROAD's solver: x2 or /2 of a converged solve's tolerance or iteration cap moves the imputed
    # pixels by ~tol only; a loose tolerance or a single iteration moves them visibly
    ("*", "tol"): [0.5],
    ("*", "max_iter"): [1],
}

#: Keys whose effect needs another setting, varied under it (dotted key -> value).
ENABLE: dict[tuple[str, str], dict[str, Any]] = {
    # strict vs not differs only at a distance equal to the tolerance (the first image's maximum
    # is 2 px from its box and its mask)
    ("*", "strict"): {"tolerance": 2.0},
    # the blur of RISE's substrate: used only when the substrate is the blur
    ("*", "blur_size"): {"substrate": "blur"},
    ("*", "blur_sigma"): {"substrate": "blur"},
    # the map comparison keys act only through the similarities and normalisation that use them
    ("*", "percentile"): {"normalise": "percentile"},
    ("*", "structure_input"): {"similarities": ["ssim", "hog"]},
    **{("*", f"ssim_{k}"): {"similarities": ["ssim"]} for k in ("data_range", "sigma")},
    ("*", "ssim_sample_covariance"): {"similarities": ["ssim"]},
    **{
        ("*", f"hog_{k}"): {"similarities": ["hog"]}
        for k in ("cell", "orientations", "block", "block_norm", "correlation")
    },
}

#: Keys whose whole effect is rounding, below the comparison's tolerance: a change of any bit
#: shows them (after a check that the YAML's values give the same bits twice).
ROUNDING: dict[tuple[str, str], str] = {
    ("*", "solver_dtype"): "float32 rounding of a converged 32 px solve: ~1e-6 of a probability",
}

#: Keys that do not change the output, each with its reason. Where values can be derived, the test
#: checks that none of them changes the output (so an entry cannot outlive its reason).
EXCLUDED: dict[tuple[str, str], str] = {
    # ROAD imputes in pixel space with neighbour weights that sum to 1: a shift of every pixel
    # by the same mean cancels when the result is normalised again (std scales the noise)
    **{
        (m, "mean"): "linear imputation commutes with a shift of the pixel mean"
        for m in ("road_abc", "road_lerf", "road_morf")
    },
}


def trained_cnn() -> nn.Module:
    """The embedded CNN as trained (conf/model/shapes_cnn.yaml): batch norm with trained
    statistics (for the randomisation checks' ``batchnorm``) and scores that respond to the input."""
    return instantiate(compose().model)


def _block(side: int, rows: slice, cols: slice) -> Tensor:
    out = torch.zeros(side, side, dtype=torch.bool)
    out[rows, cols] = True
    return out


def settings_batch(model: nn.Module) -> tuple[Batch, Tensor]:
    """Two images with boxes, masks, a "difficult" flag and partner classes, and their maps.

    Image 0 is labelled with a class other than its prediction (so ``target: label`` and
    ``prediction`` differ); its box covers pixels 4..11, its mask the box without its corners,
    and its map's maximum sits at (row 8, column 13): 2 px from both. Image 1's box covers
    16..27 and its mask 20..23 only, with the map's maximum at (17, 17): in the box, 4.2 px from
    the mask. The maps are signed levels in steps of 0.25 (ties everywhere) plus a plateau of 1:
    far from the first box (where the smoothed map peaks), around the second mask (so that the
    mask's top-ranked pixels are tied with others outside it).
    """
    images = make_images("shapes_cnn", n=2, side=SIDE)
    with torch.no_grad():
        pred = model(images).argmax(1)
    classes = model.fc.out_features
    targets = torch.stack([(pred[0] + 1) % classes, pred[1]])
    box = [torch.tensor([[4.0, 4.0, 12.0, 12.0]]), torch.tensor([[16.0, 16.0, 28.0, 28.0]])]
    mask0 = _block(SIDE, slice(4, 12), slice(4, 12))
    mask0[[4, 4, 11, 11], [4, 11, 4, 11]] = False
    masks = torch.stack([mask0, _block(SIDE, slice(20, 24), slice(20, 24))])
    partner_masks = torch.stack(
        [_block(SIDE, slice(20, 28), slice(20, 28)), _block(SIDE, slice(2, 8), slice(2, 8))]
    )
    gen = torch.Generator().manual_seed(0)
    maps = torch.randint(-2, 3, (2, SIDE, SIDE), generator=gen).float() * 0.25
    maps[0, 20:, :12] = 1.0
    maps[1, 18:, 18:] = 1.0
    maps[0, 8, 13] = maps[1, 17, 17] = 3.0
    batch = Batch(
        images=images,
        targets=targets,
        ids=["img0", "img1"],
        orig_sizes=torch.tensor([[SIDE, SIDE]] * 2),
        boxes=box,
        masks=masks,
        difficult=torch.tensor([True, False]),
        partners=(targets + 2) % classes,
        partner_masks=partner_masks,
    )
    return batch, maps


@dataclass
class MetricCase:
    name: str
    node: dict  # the composed metric node, with the fast settings
    model: nn.Module
    batch: Batch
    maps: Tensor
    ctx: Context  # one per metric: variants share it (and the family's cached curves)

    def build(self, node: dict) -> Any:
        return instantiate(node)

    def output(self, node: dict, ctx: Context | None = None) -> dict[str, Tensor]:
        return flatten_output(self.build(node)(ctx or self.ctx, self.batch, self.maps))


@functools.cache
def shared() -> tuple[nn.Module, Batch, Tensor]:
    model = trained_cnn()
    return (model, *settings_batch(model))


def context(model: nn.Module, chunk_size: int = CHUNKS[0]) -> Context:
    return Context(
        model=model, chunk_size=chunk_size, seed=0, method=Gradient(reduction="sum", abs=False)
    )


@functools.cache
def metric_case(name: str) -> MetricCase:
    node = OmegaConf.to_container(compose(f"metric=[{name}]").metric[name])
    node.update({k: v for k, v in FAST.items() if k in node})
    model, batch, maps = shared()
    return MetricCase(name, node, model, batch, maps, context(model))


def lookup(table: dict, name: str, path: Path) -> Any:
    """The entry of ``table`` for ``name``'s key ``path``, or for that key in every metric."""
    for key in ((name, dotted(path)), ("*", dotted(path))):
        if key in table:
            return table[key]
    return None


def enabled(case: MetricCase, path: Path) -> dict:
    """The case's node with what ``path`` needs to show (:data:`ENABLE`)."""
    need = lookup(ENABLE, case.name, path) or {}
    return with_values(case.node, {tuple(k.split(".")): v for k, v in need.items()})


@functools.cache
def base_output(name: str, path: Path) -> dict[str, Tensor]:
    case = metric_case(name)
    return case.output(enabled(case, path))


def values_for(case: MetricCase, path: Path) -> list[Any]:
    """The override for ``path`` if there is one, else values derived from the YAML's."""
    found = lookup(OVERRIDES, case.name, path)
    return list(found) if found is not None else candidates(case.build, case.node, path)


def _keys() -> list:
    return [
        pytest.param(name, path, id=f"{name}-{dotted(path)}")
        for name in METRICS
        for path in leaves(metric_case(name).node)
        if path[-1] not in KNOBS
    ]


def test_the_tables_name_only_existing_keys():
    for table in (OVERRIDES, ENABLE, ROUNDING, EXCLUDED):
        for name, key in table:
            names = METRICS if name == "*" else [name]
            assert name == "*" or name in METRICS, f"{name} is not a metric"
            assert any(tuple(key.split(".")) in set(leaves(metric_case(n).node)) for n in names), (
                f"{name}.{key} is in no config: remove it from the table"
            )
    assert not set(OVERRIDES) & set(EXCLUDED) and not set(ENABLE) & set(EXCLUDED)


@pytest.mark.parametrize("name,path", _keys())
def test_every_setting_changes_the_scores(name, path):
    case = metric_case(name)
    key = dotted(path)
    base, node = base_output(name, path), enabled(case, path)
    if (name, key) in EXCLUDED:
        for value in candidates(case.build, node, path):
            out = case.output(with_values(node, {path: value}))
            assert same_output(base, out), f"{name}.{key}={value!r} changes the scores"
        return
    values = values_for(case, path)
    assert values, (
        f"conf/metric/{name}.yaml: no value to change {key}={get(case.node, path)!r} to; add "
        "one to OVERRIDES, or the key to EXCLUDED with the reason it cannot change the scores"
    )
    exact = lookup(ROUNDING, name, path) is not None
    if exact:  # the same bits again, so that a change of bits is the setting's
        assert same_output(base, case.output(node, context(case.model)), exact=True), name
    tried = []
    for value in values:
        other = with_values(node, {path: value})
        assert accepts(case.build, other), f"{name}: {key}={value!r} is refused"
        try:
            out = case.output(other)
        except Exception as err:  # noqa: BLE001 - a value the class accepts but cannot run
            tried.append(f"{value!r} (fails: {err})")
            continue
        if not same_output(base, out, exact):
            return
        tried.append(repr(value))
    pytest.fail(f"{name}: {key}={get(node, path)!r} -> any of {tried} gives the same scores")


@pytest.mark.parametrize("name", METRICS)
def test_no_knob_changes_the_scores(name):
    """The run's chunk size and the metric's own knobs, each on a fresh context (nothing cached)."""
    case = metric_case(name)
    base = case.output(case.node, context(case.model))
    variants: list[tuple[str, dict, int]] = [(f"chunk_size={c}", case.node, c) for c in CHUNKS[1:]]
    for path in leaves(case.node):
        for value in KNOBS.get(path[-1], []):
            variants.append((f"{dotted(path)}={value!r}", with_values(case.node, {path: value}), 3))
    for what, node, chunk in variants:
        out = case.output(node, context(case.model, chunk))
        assert same_output(base, out), f"{name}: {what} changes the scores"
    assert same_output(base, base_output(name, ())), f"{name}: a fresh context changes the scores"


@pytest.mark.parametrize("name", METRICS)
def test_every_score_lies_in_the_range_its_class_declares(name):
    """The ranges the intervals are clipped to (``Metric.range_of``, recorded per key) hold the
    metric's scores: a declared range narrower than the scores would clip true intervals."""
    case = metric_case(name)
    metric = case.build(case.node)
    ranges = metric.ranges()
    out = metric(case.ctx, case.batch, case.maps)
    assert set(out.scores) <= set(ranges), name
    for key, scores in out.scores.items():
        if ranges[key] is None:
            continue
        lo, hi = ranges[key]
        ok = scores[torch.isfinite(scores)]
        assert lo is None or bool((ok >= lo - 1e-6).all()), (name, key, ok.min())
        assert hi is None or bool((ok <= hi + 1e-6).all()), (name, key, ok.max())
