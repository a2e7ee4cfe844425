"""What a job records about its cost, and the speed options that must not change a score.

Each run here is in-process on the embedded CNN and a handful of 112x112 images (a few seconds).
Nothing is timed against a threshold: the checks are that every phase is measured, the pass
counts equal the analytic counts, and ``chunk_size``, ``batch_size``, ``chunk_size=auto``,
``num_workers``, ``channels_last``, ``compile`` and ``precision`` leave the scores where they were.
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import nn

from bench.api import compose
from bench.core.context import AUTO_CAP, Context, memory_bytes, per_image_bytes
from bench.core.errors import ConfigError
from bench.core.profiling import PassCounter, PeakMemory, Stopwatch
from bench.engine.run import run
from bench.results.papers import throughput

# deletion/insertion at step 1792 on 112x112: 7 steps, 8 points; ROAD ABC: 2 orders x 2 fractions
FAST = [
    "model=shapes_cnn",
    "dataset.limit=4",
    "batch_size=2",
    "metric.deletion.step=1792",
    "metric.insertion.step=1792",
    "cache=off",
]


ALL = "metric=[deletion,insertion,road_abc,max_sensitivity,pointing_game]"
ALL_KEYS = ("metric.road_abc.fractions=[0.2,0.6]", "metric.max_sensitivity.n_perturb_samples=3")


def _run(tmp_path, name: str, *overrides: str, metrics: str = ALL) -> tuple[dict, pd.DataFrame]:
    keys = ALL_KEYS if metrics == ALL else ()
    cfg = compose(*FAST, metrics, *keys, *overrides)
    record = run(cfg, tmp_path / name)
    assert record["status"] == "completed", record.get("error")
    df = pd.read_csv(tmp_path / name / "scores.csv", dtype={"image_id": str})
    return record, df.set_index(["image_id", "metric"])["value"].sort_index()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The reference run: method=gradient, batch_size=2 (two batches), chunk_size=auto."""
    tmp = tmp_path_factory.mktemp("throughput")
    return _run(tmp, "reference", "method=gradient", "warmup_batches=1")


def test_every_phase_is_timed_counted_and_its_memory_measured(reference):
    record, _ = reference
    tp = record["throughput"]
    assert tp["batches"] == 2 and tp["images"] == 4
    assert tp["warmup_batches"] == 1 and tp["images_timed"] == 2  # the first batch left out
    assert tp["clock"] == "host" and tp["memory"].startswith("process_peak_rss")
    phases = tp["phases"]
    for name in ("attribute", *(f"metric.{m}" for m in record["metrics"])):
        info = phases[name]
        assert info["seconds"] > 0, name
        assert info["images_per_second"] > 0, name
        assert info["peak_memory_mib"] > 0, name
    assert phases["data"]["seconds"] > 0 and phases["load_model"]["seconds"] > 0
    assert all(v > 0 for v in record["timings"].values())


def test_pass_counts_equal_the_analytic_counts(reference):
    record, _ = reference
    phases, n = record["throughput"]["phases"], 4
    # gradient: one forward and one backward per image
    assert phases["attribute"]["forward_passes"] == n
    assert phases["attribute"]["backward_passes"] == n
    # deletion and insertion: the unperturbed image's prediction, then 8 points per curve
    for name in ("metric.deletion", "metric.insertion"):
        assert phases[name]["forward_passes"] == n * (1 + 8)
        assert phases[name]["backward_passes"] == 0
    fractions = record["metrics"]["road_abc"]["settings"]["fractions"]
    assert phases["metric.road_abc"]["forward_passes"] == n * 2 * len(fractions)
    # max-sensitivity re-runs the method on the clean image and each of 3 perturbed copies
    assert phases["metric.max_sensitivity"]["backward_passes"] == n * (1 + 3)
    assert phases["metric.pointing_game"]["forward_passes"] == 0
    metric_forwards = sum(
        phases[f"metric.{m}"]["forward_passes"] for m in ("deletion", "insertion", "road_abc")
    )
    assert record["forward"]["images"] == metric_forwards  # Context.forward's own count
    total = sum(p["forward_passes"] for p in phases.values())
    assert record["forward"]["passes"]["forward"] == total


def test_chunk_size_auto_is_recorded_and_fits_its_cap(reference):
    record, _ = reference
    plan = record["forward"]["chunk_plan"]
    assert plan["setting"] == "auto" and plan["probe_halvings"] == 0
    assert 1 <= plan["chosen"] == record["forward"]["chunk_size"] <= AUTO_CAP["cpu"]
    assert plan["estimate_mib_per_image"] > 0 and plan["budget_mib"] > 0


@pytest.mark.parametrize(
    "overrides",
    [
        ("chunk_size=3",),
        ("batch_size=3",),
        ("batch_size=4", "max_memory=0.002"),  # auto within 2 MiB: a chunk of one or two
        ("channels_last=true",),
        pytest.param(("num_workers=1",), marks=pytest.mark.slow),  # starts a worker process
        # dynamo capture + AOT autograd (inductor: docs/speed.md); seconds of compilation
        pytest.param(("compile=aot_eager",), marks=pytest.mark.slow),
    ],
    ids=lambda o: "+".join(o),
)
def test_speed_options_leave_every_score_within_float_tolerance(reference, tmp_path, overrides):
    record0, base = reference
    record, got = _run(tmp_path, "option", "method=gradient", *overrides)
    pd.testing.assert_index_equal(got.index, base.index)
    torch.testing.assert_close(
        torch.tensor(got.to_numpy()), torch.tensor(base.to_numpy()), rtol=1e-4, atol=1e-5
    )
    if overrides in (("chunk_size=3",), ("num_workers=1",)):  # run-only keys: resumable
        assert record["config_hash"] == record0["config_hash"]
    if "channels_last=true" in overrides:
        assert record["forward"]["channels_last"] is True
    if "compile=aot_eager" in overrides:
        assert record["forward"]["compile"] == "aot_eager"
    if "max_memory=0.002" in overrides:
        assert record["forward"]["chunk_plan"]["chosen"] <= 2


def test_bf16_metric_forwards_stay_within_the_stated_tolerance(reference, tmp_path):
    """bf16 autocast keeps 8 bits of mantissa: probabilities move by ~1e-2, so AUCs of 8-point
    curves stay within 0.02 and ROAD's 0/1 accuracies may flip only where a logit margin is tiny."""
    _, base = reference
    _, got = _run(
        tmp_path,
        "bf16",
        "method=gradient",
        "precision=bf16",
        metrics="metric=[deletion,insertion,pointing_game]",
    )
    for metric in ("deletion", "insertion"):
        diff = (got.xs(metric, level="metric") - base.xs(metric, level="metric")).abs()
        assert len(diff) == 4
        assert diff.max() < 0.02, (metric, diff.max())
    assert (
        got.xs("pointing_game", level="metric") == base.xs("pointing_game", level="metric")
    ).all()


class _FitsOnly(nn.Module):
    """The embedded-size model that "runs out of memory" above ``limit`` images per forward."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.net.append(nn.Linear(4, 3))

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise RuntimeError(f"DefaultCPUAllocator: can't allocate memory: {x.shape[0]} images")
        return self.net(x)


def test_an_out_of_memory_in_the_probe_halves_the_chunk_and_the_scores_are_unchanged():
    torch.manual_seed(0)
    model = _FitsOnly(limit=5).eval()
    x = torch.randn(13, 3, 8, 8)
    ctx = Context(model, chunk_size="auto", max_memory=2**30)
    assert ctx.plan_chunk(x) <= 5
    plan = ctx.chunk_plan
    assert plan["probe_halvings"] >= 1 and plan["chosen"] == ctx.chunk_size
    assert [r["where"] for r in ctx.retries] == ["chunk_size=auto probe"] * plan["probe_halvings"]
    with torch.no_grad():
        expect = model.net(x)
    torch.testing.assert_close(ctx.forward(x), expect)
    assert ctx.forward_images == 13


def test_auto_chunk_follows_the_memory_budget():
    model = _FitsOnly(limit=10**6).eval()
    x = torch.randn(1, 3, 8, 8)
    need = per_image_bytes(model, x)
    assert need >= 2 * x.numel() * 4  # at least the image and its perturbed copy
    ctx = Context(model, chunk_size="auto", max_memory=need * 7)
    assert ctx.plan_chunk(x) == 7
    assert Context(model, chunk_size="auto", max_memory=2**40).plan_chunk(x) == AUTO_CAP["cpu"]
    assert Context(model, chunk_size=9).plan_chunk(x) == 9  # a number is kept as it is


def test_pass_counter_counts_copies_and_backward_passes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    counter = PassCounter()
    handle = counter.attach(model)
    x = torch.randn(3, 3, 2, 2, requires_grad=True)
    model(x).sum().backward()
    copy.deepcopy(model)(torch.randn(5, 3, 2, 2))  # a randomisation check's copy still counts
    with torch.no_grad():
        model(x)
    assert (counter.forward, counter.backward) == (3 + 5 + 3, 3)
    handle.remove()
    model(x)
    assert counter.forward == 11


def test_stopwatch_and_peak_memory_on_the_cpu():
    watch = Stopwatch("cpu")
    with watch.measure("a"):
        sum(range(10000))
    assert watch.seconds()["a"] > 0
    memory = PeakMemory("cpu")
    memory.reset()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert memory.peak() >= block.numel() * 4


@pytest.mark.parametrize(
    "key, value, accepted",
    [
        ("chunk_size", 0, "auto or an integer >= 1"),
        ("chunk_size", "big", "auto or an integer >= 1"),
        ("max_memory", "lots", "auto, a number of GiB"),
        ("compile", "fast", "false, true (inductor)"),
        ("warmup_batches", -1, "an integer"),
    ],
)
def test_bad_speed_options_are_refused_before_any_compute(key, value, accepted, tmp_path):
    cfg = compose(*FAST, ALL, *ALL_KEYS, f"{key}={value}")
    with pytest.raises(
        ConfigError,
        match=rf"{key}={value!r}.*accepted: {accepted}".replace("(", r"\(").replace(")", r"\)"),
    ):
        run(cfg, tmp_path / "bad")
    assert not (tmp_path / "bad" / "scores.csv").exists()


def test_memory_sizes_parse():
    assert memory_bytes("auto") is None and memory_bytes(None) is None
    assert memory_bytes(2) == 2 * 2**30 and memory_bytes("512MiB") == 512 * 2**20
    assert memory_bytes("8GB") == 8 * 2**30 and memory_bytes("1.5g") == int(1.5 * 2**30)


def test_the_collated_throughput_table_carries_rates_passes_and_memory(reference):
    record, _ = reference
    table = throughput([record])
    row = table.iloc[0]
    assert row["attribute_images_per_s"] > 0 and row["model_forward_per_image"] > 0
    # gradient's own backward, then max-sensitivity's re-runs (the clean image and 3 copies)
    assert row["model_backward_per_image"] == pytest.approx(1 + (1 + 3))
    assert row["peak_memory_mib"] > 0 and row["chunk_size"] == str(record["forward"]["chunk_size"])
