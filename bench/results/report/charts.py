"""The report's pictures: matplotlib figures as inline SVG (text kept as text, no metadata, ids
unique per figure), arrays as PNG data URIs, colours of the heat-map tables and the
critical-difference diagram (Demšar 2006)."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence

import numpy as np

from bench.results.figure_base import _figure


def svg(fig, name: str) -> str:
    """``fig`` as an ``<svg>`` element to inline: text as text (the page's sans-serif font),
    no XML prolog, DOCTYPE or metadata, clip-path ids salted with ``name`` (unique on the page),
    scaled to the width of its box."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r"font-family:'?DejaVu Sans'?", "font-family:system-ui,sans-serif", text)
    text = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="[\d.]+pt"', _sized, text, count=1)
    return f'<div class="scroll">{text.strip()}</div>'


def _sized(m: re.Match) -> str:
    return f'<svg{m.group(1)} style="width:{m.group(2)}pt"'


def png_uri(rgb: np.ndarray) -> str:
    """An ``[H, W, 3]`` uint8 array (or ``[H, W, 3]`` float in [0, 1]) as a PNG data URI."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def css_colour(value: float, cmap: str = "RdBu", lo: float = -1.0, hi: float = 1.0) -> str:
    """``background`` and text colour of a heat-map cell holding ``value`` (grey when NaN)."""
    from matplotlib import colormaps

    if not np.isfinite(value):
        return "background:#e8e8e8"
    r, g, b, _ = colormaps[cmap](float(np.clip((value - lo) / (hi - lo), 0.0, 1.0)))
    light = 0.299 * r + 0.587 * g + 0.114 * b
    fg = "#000" if light > 0.55 else "#fff"
    return f"background:rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f});color:{fg}"


def gradient(cmap: str, stops: int = 11) -> str:
    """A CSS ``linear-gradient`` of ``cmap`` (the colour bar of the saliency grid)."""
    from matplotlib import colormaps

    cm = colormaps[cmap]
    parts = []
    for t in np.linspace(0.0, 1.0, stops):
        r, g, b, _ = cm(float(t))
        parts.append(f"rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f}) {t * 100:.0f}%")
    return "linear-gradient(to right," + ",".join(parts) + ")"


def cliques(ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Groups of methods (``(first, last)`` positions in ``ranks``, sorted ascending) whose
    average ranks lie within ``cd`` of each other, maximal and of two or more methods: the bars
    of a critical-difference diagram (no significant difference inside a bar)."""
    out: list[tuple[int, int]] = []
    r = list(ranks)
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in out):
            out.append((i, j))
    return out


def cd_diagram(methods: Sequence[str], ranks: Sequence[float], cd: float, title: str):
    """Demšar's critical-difference diagram: the methods on an axis of average rank (1 = best, at
    the left), labels to the left for the better half and to the right for the rest, a bar of
    length ``cd`` and thick bars joining methods closer than ``cd`` (Nemenyi: not significantly
    different). Returns a matplotlib figure."""
    order = np.argsort(ranks, kind="stable")
    names = [methods[i] for i in order]
    r = np.asarray(ranks, dtype=float)[order]
    k = len(names)
    half = (k + 1) // 2
    groups = cliques(r, cd)
    first = -0.35 - 0.3 * len(groups) - 0.15
    bottom = first - 0.4 * max(half, k - half)
    fig = _figure(figsize=(max(5.5, 2.2 + 0.3 * k), 0.7 + 0.42 * (1.7 - bottom)))
    ax = fig.add_subplot()
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(bottom, 1.7)
    ax.axis("off")
    ax.hlines(0, 1, k, color="k", lw=1)
    every = 1 if k <= 15 else 5
    for t in range(1, k + 1):
        ax.vlines(t, 0, 0.18 if t % every == 0 or t in (1, k) else 0.1, color="k", lw=1)
        if t % every == 0 or t in (1, k):
            ax.text(t, 0.28, str(t), ha="center", va="bottom", fontsize=8)
    ax.hlines(1.3, 1, 1 + cd, color="k", lw=1.5)
    ax.vlines([1, 1 + cd], 1.22, 1.38, color="k", lw=1)
    ax.text(1 + cd / 2, 1.42, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    for n, (a, b) in enumerate(groups):
        ax.hlines(-0.35 - 0.3 * n, r[a] - 0.04, r[b] + 0.04, color="k", lw=3.5)
    for i, (name, x) in enumerate(zip(names, r)):
        left = i < half
        y = first - 0.4 * (i if left else k - 1 - i)
        end = 0.5 if left else k + 0.5
        ax.plot([x, x, end], [0, y, y], color="0.35", lw=0.8)
        ha = "right" if left else "left"
        ax.text(end + (-0.08 if left else 0.08), y, f"{name} ({x:.2f})", ha=ha, va="center",
                fontsize=8)  # fmt: skip
    fig.suptitle(title, fontsize=9)
    return fig
