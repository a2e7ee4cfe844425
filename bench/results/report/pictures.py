"""The report's curves (every curve metric, mean with the tables' 95% interval as a band) and its
saliency grid (the image, the class explained and the model's prediction, each method's map in
one colour map with a colour bar, each map's scores under it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import first_line
from bench.engine.record import Record
from bench.results.figure_curves import curves_figure, sanity_figure
from bench.results.figures import MAP_CMAPS, _overlay_style, _safe_target, map_rgb
from bench.results.report.charts import gradient, png_uri, svg
from bench.results.report.data import Study
from bench.results.report.page import Section, esc, figure
from bench.results.summary import ARROWS

#: Maps and images larger than this (pixels, either side) are shrunk to fit it in the page;
#: a grid of more than ``MANY`` methods uses ``SMALL_SIDE`` (a catalogue sweep stays a few MB).
MAX_SIDE = 128
MANY, SMALL_SIDE = 8, 80


def curves_section(study: Study) -> Section:
    sec = Section("curves", "Curves")
    if not study.curves:
        return sec.without(
            "No curve: no metric here records one (deletion, insertion, MoRF/LeRF, ROAD, sanity checks do)."
        )
    parts = []
    for name, draw, what in (
        ("curves", curves_figure, "Perturbation curves (deletion/insertion, MoRF/LeRF, ROAD, ...)"),
        ("sanity", sanity_figure, "Model-randomisation checks, layer by layer"),
    ):
        fig = draw(study.curves, "ci95")
        if fig is not None:
            caption = f"{what}: mean over images; band: the 95% bootstrap interval of the mean (BCa, resampling images)."
            parts.append(figure(svg(fig, name), esc(caption)))
    sec.body = "".join(parts)
    return sec


def shrink(a: np.ndarray, side: int = MAX_SIDE) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 picture shrunk (box filter) to at most ``side`` pixels a side."""
    from PIL import Image

    h, w = a.shape[:2]
    if max(h, w) <= side:
        return a
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BOX))


def predictions(record: Record, images: dict[str, dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """``id -> (predicted class name, its softmax probability)`` of the job's model on the
    images (the model composed from the record, checked as a config: no code the record names
    is run)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if not images:
        return {}
    node = OmegaConf.to_container(OmegaConf.create(record.config or {}), resolve=True)
    _safe_target(node.get("model"), "model")
    model = instantiate(node["model"]).eval()
    ids = list(images)
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack([images[i]["tensor"] for i in ids])).float(), 1)
    p, k = probs.max(1)
    out = {}
    for i, c, v in zip(ids, k.tolist(), p.tolist()):
        names = images[i].get("names") or []
        out[i] = (names[c] if 0 <= c < len(names) else str(c), float(v))
    return out


def _scores(rows: pd.DataFrame, method: str, image_id: str) -> str:
    g = rows[(rows["method"] == method) & (rows["image_id"] == image_id)]
    lines = []
    for r in g.sort_values("metric").itertuples(index=False):
        arrow = ARROWS.get(str(getattr(r, "direction", "")), "")
        value = "—" if not np.isfinite(r.value) else f"{r.value:.3f}"
        flag = f' <span class="warn">({esc(r.flag)})</span>' if getattr(r, "flag", "") else ""
        lines.append(f"{esc(r.metric)} {arrow} {value}{flag}")
    return "<br>".join(lines)


def _image_cell(i: str, image: dict | None, target: Any, pred: tuple[str, float] | None) -> str:
    if image is None:
        return f"<td><code>{esc(i)}</code><br>image not available here</td>"
    names = image.get("names") or []
    t = int(target) if target is not None and np.isfinite(target) else image["target"]
    explained = names[t] if 0 <= t < len(names) else str(t)
    label = "" if t == image["target"] else f"<br>label: {esc(image['class'])}"
    if pred is None:
        said = "prediction: not available here"
    else:
        mark = "" if pred[0] == image["class"] else ' <span class="bad">(wrong)</span>'
        said = f"prediction: <b>{esc(pred[0])}</b> ({pred[1]:.0%}){mark}"
    uri = png_uri(shrink((np.clip(image["rgb"], 0, 1) * 255 + 0.5).astype(np.uint8)))
    return (
        f'<td><img src="{uri}" alt="image {esc(i)}" data-image="{esc(i)}">'
        f"<code>{esc(i)}</code><br>explained: <b>{esc(explained)}</b>{label}<br>{said}</td>"
    )


def colour_bars(signed_any: bool) -> str:
    """The colour bars of the grid: viridis for maps of one sign, RdBu_r for signed maps."""
    bars = [
        f'<div><span class="cbar" style="background:{gradient(MAP_CMAPS[False])}"></span>'
        "0 = the map's minimum … 1 = its 99th percentile (viridis)</div>"
    ]
    if signed_any:
        bars.append(
            f'<div><span class="cbar" style="background:{gradient(MAP_CMAPS[True])}"></span>'
            "signed maps: −1 … 0 … +1 × the 99th percentile of |map| (diverging RdBu)</div>"
        )
    return f'<div class="legend small">{"".join(bars)}</div>'


def grid_html(study: Study, group: tuple[str, str], grid: dict[str, Any]) -> str:
    """One (model, dataset)'s grid: a row per image, a column per method."""
    model, dataset = group
    rows = study.rows[(study.rows["model"] == model) & (study.rows["dataset"] == dataset)]
    methods = sorted(rows["method"].unique())
    ids, images = grid["ids"], grid["images"]
    side = MAX_SIDE if len(methods) <= MANY else SMALL_SIDE
    try:
        preds = predictions(grid["records"][0], images)
    except Exception as err:  # noqa: BLE001 - the model not available here: no prediction
        preds = {}
        study.notes.append(f"{model} / {dataset}: no prediction shown ({first_line(err)})")
    styles = {
        m: _overlay_style([grid["methods"][m][i] for i in ids if i in grid["methods"][m]])
        for m in grid["methods"]
    }
    head = "".join(
        f"<th>{esc(m)}{' (signed)' if styles.get(m, {}).get('signed') else ''}</th>"
        for m in methods
    )
    body = []
    for i in ids:
        targets = rows.loc[rows["image_id"] == i, "target"]
        cells = [
            _image_cell(i, images.get(i), targets.iloc[0] if len(targets) else None, preds.get(i))
        ]
        for m in methods:
            cells.append(_map_cell(grid, styles, rows, m, i, side))
        body.append("<tr>" + "".join(cells) + "</tr>")
    none = [m for m in methods if m not in grid["methods"]]
    note = (
        f'<p class="missing small">No map of {esc(", ".join(none))}: not saved (save_maps=true) '
        "and not in the attribution cache.</p>"
        if none
        else ""
    )
    signed_any = any(s.get("signed") for s in styles.values())
    return (
        f"<h3>{esc(model)} / {esc(dataset)}</h3>{colour_bars(signed_any)}"
        f'<div class="scroll"><table class="grid"><thead><tr><th>image</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def _map_cell(grid, styles, rows: pd.DataFrame, method: str, i: str, side: int) -> str:
    m = grid["methods"].get(method, {}).get(i)
    scores = _scores(rows, method, i)
    if m is None:
        why = (
            "no map (not saved, not cached)"
            if method not in grid["methods"]
            else "no map (flagged, or not saved for this image)"
        )
        return f'<td><span class="missing">{why}</span><br>{scores}</td>'
    signed = styles[method]["signed"]
    uri = png_uri(shrink(map_rgb(m, signed), side))
    return (
        f'<td><img src="{uri}" alt="{esc(method)} map of {esc(i)}" data-method="{esc(method)}" '
        f'data-image="{esc(i)}" data-signed="{int(signed)}">{scores}</td>'
    )


def saliency_section(study: Study) -> Section:
    sec = Section("saliency", "Saliency maps")
    if not study.grids:
        groups = (
            ""
            if study.rows.empty
            else " of "
            + ", ".join(f"{m} / {d}" for m, d in study.rows.groupby(["model", "dataset"]).groups)
        )
        sec.missing = (f"No saliency grid{groups}: no job saved its maps (save_maps=true) and "
                       "none were found in the attribution cache.")  # fmt: skip
        return sec
    parts = ['<p class="small">The first images every method scored; each map alone in one '
             "colour map (its scale below), the map's per-image scores under it (as in "
             "<code>scores_all.csv</code>).</p>"]  # fmt: skip
    for group, grid in sorted(study.grids.items()):
        parts.append(grid_html(study, group, grid))
    sec.body = "".join(parts)
    return sec
