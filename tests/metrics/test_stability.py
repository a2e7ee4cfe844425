"""What may move across machines (docs/stability.md). Two CPUs run the same model with kernels that
sum in another order, so a map or a logit differs in its last bits (relative ~1e-7). Every metric
declares what that does to its score (``Metric.stability``): ``rounding`` scores move by about
as much; ``ranking`` scores order pixels (or bin values), so an image whose map has near-ties may
jump by a step; ``binary`` scores (0/1 per image from a maximum) flip for an image whose maximum
is near-tied. Each kind is shown here on maps moved by that much noise, seeded samples are shown
bit-stable, and the regression baseline's tolerances are checked to allow what may move."""

from __future__ import annotations

import re

import pytest
import torch
from hydra.utils import get_class

from bench import ROOT
from bench.api import compose
from bench.core.context import Context
from bench.methods.baselines import CentreGaussian, Random
from bench.metrics.base import Stability
from bench.metrics.complexity import Complexity, Sparseness
from bench.metrics.faithfulness import Deletion, Insertion, MoRF
from bench.metrics.localisation import (
    EnergyPointingGame,
    PointingGame,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
)
from bench.results.regress import Tolerances, cross_machine_margin, read_baseline
from tests.metrics import _faith_helpers as fh
from tests.metrics import _loc_helpers as lh

#: The relative size of the float noise two CPUs leave in a map.
NOISE = 1e-7
METRIC_CONFIGS = sorted(p for p in (ROOT / "conf" / "metric").glob("*.yaml") if p.name[0] != "_")


def metric_class(name: str) -> type:
    """The class ``conf/metric/<name>.yaml`` instantiates (its defaults list followed)."""
    return get_class(compose(f"metric=[{name}]", resolve=False).metric[name]["_target_"])


def jitter(maps: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return maps * (1 + NOISE * torch.randn(maps.shape, generator=g))


def tied_maps(b: int, h: int, w: int) -> torch.Tensor:
    """Maps of 8 levels: every pixel shares its value with many others (a CAM's ReLU plateau,
    an upsampled map's equal neighbours), so a rounding-sized move reorders them."""
    g = torch.Generator().manual_seed(0)
    return 0.1 + torch.randint(0, 8, (b, h, w), generator=g).float() / 8


@pytest.mark.parametrize("path", METRIC_CONFIGS, ids=lambda p: p.stem)
def test_every_configured_metric_declares_how_it_moves(path):
    cls = metric_class(path.stem)
    assert isinstance(cls.stability, Stability), f"{cls.__name__} declares no stability"
    for key in cls.suffixes:
        assert isinstance(cls.stability_of(key), Stability)


@pytest.fixture(scope="module")
def faith():
    model = fh.tiny_cnn()
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    return fh.make_ctx(model), fh.make_batch(images)


@pytest.mark.parametrize("metric", [Deletion(step=8), Insertion(step=8), MoRF(step=8)])
def test_a_ranking_score_jumps_at_near_ties_and_not_without_them(faith, metric):
    assert type(metric).stability is Stability.RANKING
    ctx, batch = faith
    tied = tied_maps(4, 16, 16)
    moved = metric(ctx, batch, tied).scores[""] - metric(ctx, batch, jitter(tied)).scores[""]
    assert moved.abs().max() > 100 * NOISE, "near-tied pixels reordered: an image's score jumps"
    distinct = fh.distinct_maps(4, 16, 16)  # values 1/256 apart: the noise reorders nothing
    same = metric(ctx, batch, distinct).scores[""], metric(ctx, batch, jitter(distinct)).scores[""]
    assert torch.equal(*same)


def test_a_binary_score_flips_when_its_maximum_is_near_tied():
    assert PointingGame.stability is Stability.BINARY
    maps = torch.zeros(1, 8, 8)
    maps[0, 0, 0] = maps[0, 6, 6] = 1.0  # two equal maxima, the box holds the second
    batch = lh.make_batch(maps, boxes=[[[5, 5, 8, 8]]])
    game = PointingGame(tolerance=0)
    before = game(lh.make_ctx(), batch, maps).scores[""]
    maps[0, 6, 6] += NOISE  # one rounding apart
    after = game(lh.make_ctx(), batch, maps).scores[""]
    assert before.item() == 0.0 and after.item() == 1.0


@pytest.mark.parametrize(
    "metric, stability",
    [
        (EnergyPointingGame(), Stability.ROUNDING),
        (RelevanceMassAccuracy(region="boxes"), Stability.ROUNDING),
        (Complexity(), Stability.ROUNDING),
        (Sparseness(), Stability.ROUNDING),
        (RelevanceRankAccuracy(region="boxes"), Stability.RANKING),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, Stability) else x.value,
)
def test_a_rounding_score_moves_by_about_the_rounding(metric, stability):
    assert type(metric).stability is stability
    maps = tied_maps(4, 16, 16)
    batch = lh.make_batch(maps, boxes=[[[2, 3, 9, 12]]] * 4)
    a = metric(lh.make_ctx(), batch, maps).scores[""]
    b = metric(lh.make_ctx(), batch, jitter(maps)).scores[""]
    if stability is Stability.ROUNDING:
        assert (a - b).abs().max() < 1e-5
    else:  # the top pixels of a tied map: the cut falls inside a tie
        assert (a - b).abs().max() > 100 * NOISE


def test_maps_of_seeds_alone_are_bit_stable():
    """A map drawn from a seeded generator (and keyed by the image) or computed from the image
    size alone is the same bits on every machine, and so is a score that reads only it."""
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    targets = torch.zeros(3, dtype=torch.long)
    for method in (Random(seed=0), CentreGaussian()):
        a = method(torch.nn.Identity(), images, targets)
        assert torch.equal(a, method(torch.nn.Identity(), images.clone(), targets))
    ctx = Context(model=torch.nn.Identity(), seed=0)
    batch = lh.make_batch(a, boxes=[[[2, 3, 9, 12]]] * 3)
    assert torch.equal(
        PointingGame(tolerance=0)(ctx, batch, a).scores[""],
        PointingGame(tolerance=0)(ctx, batch, a.clone()).scores[""],
    )


def test_the_regression_tolerances_allow_what_may_move_across_machines():
    """conf/regress/default.yaml: each cell of the committed baseline may move by
    ``cross_machine_margin`` (2 images, each by its score's largest step) without failing."""
    assert cross_machine_margin("binary", 0.5, 32) == 2 / 32  # two images flip
    assert cross_machine_margin("ranking", 0.5, 32) == 2 * 0.5 / 32  # two curves move a step
    baseline = read_baseline(ROOT / "results" / "reference" / "regress" / "baseline.json")
    tol = Tolerances.load(None)
    steps = dict(re.findall(r"metric\.(\w+)\.step=(\d+)", baseline["command"]))
    height, width = compose("model=shapes_cnn").model.input_size
    pixels = height * width
    for cell in baseline["cells"]:
        name = cell["metric"]
        fraction = int(steps.get(name, 224)) / pixels
        cls = metric_class(name)
        need = cross_machine_margin(cls.stability_of(), fraction, cell["n"])
        allowed = tol.rule(name).allowed(cell["mean"])
        assert allowed >= need, f"{cell['method']} {name}: allows {allowed:.4f} < {need:.4f}"
