"""bench-figures: every figure from a tiny sweep made in-process, as non-empty PNG and PDF files;
the saliency grid's panels, the curves' x axes, the sanity checks' layer labels, the rank
agreement's directions and the throughput table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.api import compose
from bench.cli.figures import main as figures_main
from bench.engine.run import run
from bench.results import figures as F
from bench.results.collate import collate, summarise

METRICS = "metric=[deletion,insertion,pointing_game,model_randomisation_cascading]"
COMMON = (
    "dataset.limit=3",
    "batch_size=3",
    METRICS,
    "metric.model_randomisation_cascading.similarities=[ssim,spearman_abs]",
)
#: (method, save_maps): gradcam's maps only in the attribution cache
JOBS = (("random", True), ("gradient", True), ("gradcam", False))
NAMES = {"curves", "sanity", "rank_agreement", "throughput", "saliency_shapes_cnn_shapes"}


def colour_bars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def panels(fig) -> list:
    """A figure's panels, its colour bars left out."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("figs")
    cache = root / "cache"
    for i, (method, save) in enumerate(JOBS):
        cfg = compose(
            f"method={method}",
            *COMMON,
            f"save_maps={str(save).lower()}",
            f"paths.cache_root={cache}",
            "cache=readwrite",  # tests/conftest.py turns it off
            resolve=False,
        )
        record = run(cfg, root / "sweep" / f"{i}_{method}")
        assert record["status"] == "completed"
    return root / "sweep"


def test_every_figure_written_as_png_and_pdf(sweep, tmp_path):
    written = F.write_figures([sweep], tmp_path / "out")
    assert {p.name for p in written} == {f"{n}.{f}" for n in NAMES for f in ("png", "pdf")}
    for p in written:
        data = p.read_bytes()
        assert len(data) > 1000
        assert data.startswith(b"\x89PNG" if p.suffix == ".png" else b"%PDF")


def test_saliency_grid_has_a_panel_per_image_and_method(sweep):
    figs = F.figures([sweep], n_images=2)
    fig = figs["saliency_shapes_cnn_shapes"]
    # rows = 2 images, columns = the image + the two methods that saved maps
    axes = panels(fig)
    assert len(axes) == 2 * 3
    assert [ax.get_title() for ax in axes[:3]] == ["image", "gradient", "random"]
    assert all(len(ax.images) >= 1 for ax in axes)  # every panel shows the image
    assert all(len(ax.images) == 2 for ax in axes[1:3])  # ... and its map over it
    assert len(colour_bars(fig)) >= 1  # the maps' scale


def test_saliency_grid_reads_maps_back_from_the_attribution_cache(sweep):
    grids = F.saliency_grids(F.load_jobs([sweep])[0], n_images=3, from_cache=True)
    grid = grids[("shapes_cnn", "shapes")]
    assert sorted(grid["methods"]) == ["gradcam", "gradient", "random"]
    # the cached gradcam maps are the maps the job scored: the same as recomputing them
    from hydra.utils import instantiate

    from bench.api import compose as _compose

    cfg = _compose("method=gradcam", *COMMON)
    images = grid["images"]
    assert len(images) == 3
    ids = grid["ids"]
    model = instantiate(cfg.model).eval()
    method = instantiate(cfg.method)
    import torch

    x = torch.stack([images[i]["tensor"] for i in ids])
    t = torch.tensor([images[i]["target"] for i in ids])
    fresh = method(model, x, t).detach().numpy()
    np.testing.assert_allclose(np.stack([grid["methods"]["gradcam"][i] for i in ids]), fresh)
    fig = F.saliency_figure(("shapes_cnn", "shapes"), grid)
    assert len(panels(fig)) == 3 * 4


def test_maps_are_drawn_alone_when_the_dataset_cannot_be_composed(sweep, monkeypatch):
    def unavailable(record, ids):
        raise FileNotFoundError("data/imagenet/val is not there")

    monkeypatch.setattr(F, "job_images", unavailable)
    fig = F.figures([sweep], n_images=2)["saliency_shapes_cnn_shapes"]
    assert len(panels(fig)) == 2 * 3
    assert "images not available" in fig.get_suptitle()


def test_curves_have_one_panel_per_curve_metric_and_a_line_per_method(sweep):
    sets = F.curve_sets(F.load_jobs([sweep])[0])
    labels = {cs.label for cs in sets}
    assert {"deletion", "insertion"} <= labels
    assert {"model_randomisation_cascading.ssim", "model_randomisation_cascading.spearman_abs"} <= (
        labels
    )
    fig = F.curves_figure(sets)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2  # deletion, insertion
    for ax in panels:
        assert len(ax.get_lines()) == 3
        assert ax.get_xlabel().startswith("fraction of pixels")
        x = ax.get_lines()[0].get_xdata()
        assert x[0] == 0 and x[-1] == 1 and len(x) == 57
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["gradcam", "gradient", "random"]


def test_sanity_curves_name_the_randomised_layers(sweep):
    jobs, _ = F.load_jobs([sweep])
    layers = jobs[0].record.metric_info("model_randomisation_cascading").curve_x
    fig = F.sanity_figure(F.curve_sets(jobs))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2  # ssim, spearman_abs
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels()] == layers
        assert "layer randomised" in ax.get_xlabel()
        assert len(ax.get_lines()) == 3


def test_curve_axis_from_the_metric_settings():
    deletion = {"class": "Deletion", "settings": {"step": 224}}
    x, label = F.curve_axis(deletion, 57, (112, 112))
    assert label == "fraction of pixels removed" and x[1] == pytest.approx(224 / 112**2)
    x, label = F.curve_axis({"class": "Insertion", "settings": {"step": 1000}}, 14, (112, 112))
    assert label == "fraction of pixels inserted" and x[-1] == 1 and x[-2] == 12000 / 12544
    tiles = {"class": "MoRF", "settings": {"step": 10, "patch_size": 4}}
    x, label = F.curve_axis(tiles, 80, (112, 112))  # 784 tiles, 10 a step
    assert label == "fraction of 4×4 tiles removed" and x[-1] == 1
    road = {"class": "RoadMoRF", "settings": {"fractions": [0.1, 0.5, 0.9]}}
    assert F.curve_axis(road, 3, None)[0].tolist() == [0.1, 0.5, 0.9]
    gomez = {"class": "DAUC", "settings": {"max_steps": 196, "map_size": [7, 7]}}
    x, _ = F.curve_axis(gomez, 50, (224, 224))
    assert x[-1] == 1 and x[1] == 1 / 49
    # settings that do not give the curve's length: the step index
    x, label = F.curve_axis(deletion, 30, (112, 112))
    assert label == "step" and x.tolist() == list(range(30))
    assert F.curve_axis({}, 5, None)[1] == "step"


def _summary(rows):
    return pd.DataFrame(rows, columns=["model", "dataset", "method", "metric", "mean", "direction"])


def test_rank_agreement_is_direction_aware():
    rows = []
    for method, good in (("a", 3.0), ("b", 2.0), ("c", 1.0)):
        rows += [
            ("m", "d", method, "higher_is_better", good, "higher"),
            ("m", "d", method, "lower_is_better", -good, "lower"),  # same ranking, reversed sign
            ("m", "d", method, "reversed", good, "lower"),  # the opposite ranking
            ("m", "d", method, "descriptive", good, "none"),  # no best: left out
            ("m", "d", method, "constant", 1.0, "higher"),  # does not separate the methods
        ]
    tau = F.rank_agreement(_summary(rows))[("m", "d")]
    assert list(tau.index) == ["higher_is_better", "lower_is_better", "reversed"]
    assert tau.loc["higher_is_better", "lower_is_better"] == pytest.approx(1.0)
    assert tau.loc["higher_is_better", "reversed"] == pytest.approx(-1.0)
    assert F.rank_agreement_figure(_summary(rows)) is not None
    # one method, or one metric: nothing to compare
    assert F.rank_agreement(_summary([r for r in rows if r[2] == "a"])) == {}
    assert F.rank_agreement_figure(_summary([r for r in rows if r[3] == "reversed"])) is None


def test_throughput_per_image_from_the_records(sweep):
    jobs, _ = F.load_jobs([sweep])
    df = F.throughput(jobs)
    assert set(df["method"]) == {"random", "gradient", "gradcam"}
    phases = set(df["phase"])
    assert {"attribution", "deletion", "model_randomisation_cascading", "setup", "other"} <= phases
    assert (df["images"] == 3).all() and (df["per_image"] >= 0).all()
    record = json.loads((sweep / "0_random" / "record.json").read_text())
    got = df[(df["method"] == "random")]["per_image"].sum()
    assert got == pytest.approx(record["wall_seconds"] / 3, rel=1e-6)  # the phases add up to wall
    fig = F.throughput_figure(jobs)
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 3 * len(df[df["method"] == "random"])


@pytest.mark.slow
def test_cli(sweep, tmp_path, capsys):
    out = tmp_path / "cli"
    assert figures_main([str(sweep), "--out", str(out), "--format", "png", "--images", "2"]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(f"{n}.png" for n in NAMES)
    assert figures_main([str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert figures_main([str(tmp_path / "empty")]) == 1
    assert figures_main([str(sweep), "--images", "0"]) == 2


def test_a_damaged_job_is_refused_in_one_line(sweep, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sweep / "0_random", copy / "0_random")
    with (copy / "0_random" / "curves.npz").open("ab") as f:
        f.write(b"x")
    assert figures_main([str(copy), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "curves.npz does not match its record" in err[0]


# --- the plotted values read back and compared with the tables they draw -------------------------


def _job_dirs(sweep: Path) -> dict[str, Path]:
    return {d.name.split("_", 1)[1]: d for d in sorted(sweep.iterdir()) if d.is_dir()}


def _panels(fig) -> dict[str, object]:
    """Visible panels by the curve label their title starts with (a long one is broken in two)."""
    return {
        ax.get_title().replace("\n.", ".").split(" ")[0]: ax for ax in fig.axes if ax.get_visible()
    }


def _line_of(ax, colour) -> np.ndarray:
    """The y values of the one line of ``ax`` drawn in ``colour`` (each method has its own)."""
    from matplotlib.colors import to_rgba

    (line,) = [ln for ln in ax.get_lines() if to_rgba(ln.get_color()) == to_rgba(colour)]
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)


def test_plotted_curves_are_the_mean_curves_and_their_area_the_tables_mean_score(sweep):
    """Each method's line in the curves figure is the mean over images of its curves in
    curves.npz, and the area under it (trapezoid, x = fraction of pixels) is the method's mean
    deletion / insertion score in the summary table (the AUC is linear in the curve)."""
    summary = summarise(collate([sweep]).rows).set_index(["method", "metric"])
    assert not (summary["excluded"] > 0).any()  # no flagged map: every image is in both
    fig = F.figures([sweep], n_images=1)["curves"]
    panels = _panels(fig)
    styles = F.method_styles(_job_dirs(sweep))
    for metric in ("deletion", "insertion"):
        for method, folder in _job_dirs(sweep).items():
            x, y = _line_of(panels[metric], styles[method]["color"])
            with np.load(folder / "curves.npz") as z:
                np.testing.assert_allclose(y, z[metric].mean(0), rtol=0, atol=1e-7)
            area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
            assert area == pytest.approx(summary.loc[(method, metric), "mean"], abs=1e-6)
            assert len(x) == 57 and x[1] == pytest.approx(224 / 112**2)


def test_plotted_sanity_curves_average_to_the_tables_mean_similarity(sweep):
    """Each method's line in the sanity figure is its mean similarity per randomised layer; its
    mean over the layers is the method's score in the summary table (each image's score is the
    mean over the layers)."""
    summary = summarise(collate([sweep]).rows).set_index(["method", "metric"])
    fig = F.figures([sweep], n_images=1)["sanity"]
    panels = _panels(fig)
    styles = F.method_styles(_job_dirs(sweep))
    compared = 0
    for s in ("ssim", "spearman_abs"):
        key = f"model_randomisation_cascading.{s}"
        for method, folder in _job_dirs(sweep).items():
            _, y = _line_of(panels[key], styles[method]["color"])
            with np.load(folder / "curves.npz") as z:
                curves = z[key]
            np.testing.assert_allclose(y, np.nanmean(curves, 0), rtol=0, atol=1e-7)
            if not np.isnan(curves).any():
                want = summary.loc[(method, key), "mean"]
                assert y.mean() == pytest.approx(want, abs=1e-6), (method, key)
                compared += 1
    assert compared >= 3  # NaN steps (a constant map's similarity) make the means differ


def test_rank_agreement_heatmap_is_kendalls_tau_of_the_tables_means(sweep):
    """The heatmap's cells (and their printed values) are Kendall's tau between two metrics'
    rankings of the methods, from the summary table's means signed by each metric's direction."""
    from scipy import stats as sps

    summary = summarise(collate([sweep]).rows)
    fig = F.figures([sweep], n_images=1)["rank_agreement"]
    ax = fig.axes[0]
    labels = [t.get_text().split(" ")[0] for t in ax.get_yticklabels()]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        t.get_text() for t in ax.get_yticklabels()
    ]
    cells = np.asarray(ax.images[0].get_array(), float)
    texts = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    sign = {"higher": 1.0, "lower": -1.0}
    means = {
        m: {r.method: sign[r.direction] * r.mean for r in g.itertuples()}
        for m, g in summary[summary["direction"].isin(list(sign))].groupby("metric")
    }
    assert len(labels) >= 3
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            methods = sorted(means[a])
            tau = sps.kendalltau([means[a][k] for k in methods], [means[b][k] for k in methods])
            assert cells[i, j] == pytest.approx(tau.statistic), (a, b)
            assert texts[(i, j)] == f"{tau.statistic:.2f}"


def test_throughput_bars_add_up_to_each_jobs_wall_time_per_image(sweep):
    """The stacked bars of a method (one per phase) end at its record's wall time per image, and
    each bar is that phase's seconds per image in the record."""
    fig = F.figures([sweep], n_images=1)["throughput"]
    ax = fig.axes[0]
    methods = [t.get_text().split(" ")[0] for t in ax.get_yticklabels()]
    ends: dict[str, float] = {}
    widths: dict[tuple[str, str], float] = {}
    for container in ax.containers:
        for y, bar in enumerate(container.patches):
            ends[methods[y]] = max(ends.get(methods[y], 0.0), bar.get_x() + bar.get_width())
            widths[(methods[y], container.get_label())] = bar.get_width()
    for method, folder in _job_dirs(sweep).items():
        record = json.loads((folder / "record.json").read_text())
        assert ends[method] == pytest.approx(record["wall_seconds"] / 3, rel=1e-6)
        timings = record["timings"]
        assert widths[(method, "attribution")] == pytest.approx(timings["attribute"] / 3)
        assert widths[(method, "deletion")] == pytest.approx(timings["metric.deletion"] / 3)
