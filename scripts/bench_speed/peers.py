"""Section 2, peers: the same work done by another tool (Quantus, grad-cam, captum, the lime and
shap packages, the published reference loops), timed against ours and the values compared.

:data:`BUILDERS` is the table: a peer's name -> a builder of its :class:`Peer` from the
:class:`Work` every peer shares. A builder configures the peer to our metric's (or method's)
protocol, as the peer-agreement tests do; a peer whose package is missing is a row saying so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate

from bench.core.context import Context

from .machine import installed
from .measure import med, ratio, round_robin, timed
from .references import bare_lime, bare_shap, gomez_deletion_curve, rise_causal_curve
from .setups import Setup, method_config, metric_config, settings_note


@dataclass
class Peer:
    """Our call and the peer's on the same work; ``diff`` = max |ours - theirs| of the values."""

    name: str
    peer: str
    protocol: str
    ours: Callable[[], Any] | None = None
    theirs: Callable[[], Any] | None = None
    compare: Callable[[Any, Any], float] | None = None
    note: str = ""
    diff: float | None = None
    times: dict[str, list[float]] = field(default_factory=dict)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def tie_free(maps: torch.Tensor) -> torch.Tensor:
    """``maps`` plus a tiny seeded jitter (1e-6 of each map's range): no ties, so every peer ranks
    the pixels in the same order whatever its tie rule."""
    g = torch.Generator().manual_seed(123)
    jitter = torch.rand(maps.shape, generator=g).to(maps.device)
    span = (maps.flatten(1).amax(1) - maps.flatten(1).amin(1)).clamp_min(1e-12)
    return maps + 1e-6 * span.view(-1, 1, 1) * jitter


def curve_diff(ours: torch.Tensor, theirs: Any) -> float:
    return float(np.abs(_np(ours) - np.asarray(theirs, dtype=np.float64)).max())


@dataclass
class Work:
    """What every peer works on: the peer model's images, its tie-free maps, the settings."""

    setup: Setup
    args: argparse.Namespace
    knobs: dict
    device: torch.device
    maps: torch.Tensor = field(init=False)
    preds: torch.Tensor = field(init=False)
    numpy: dict[str, np.ndarray] = field(init=False)  # the images and targets, for Quantus

    def __post_init__(self) -> None:
        self.maps = tie_free(self.setup.maps)
        with torch.no_grad():
            self.preds = self.setup.model(self.images).argmax(1)
        self.numpy = {"x_batch": _np(self.images), "y_batch": self.targets.cpu().numpy()}

    @property
    def model(self) -> torch.nn.Module:
        return self.setup.model

    @property
    def images(self) -> torch.Tensor:
        return self.setup.batch.images

    @property
    def targets(self) -> torch.Tensor:
        return self.setup.batch.targets

    def ctx(self, seed: int = 0) -> Context:
        return Context(
            model=self.model,
            device=self.device,
            chunk_size=self.args.chunk_size,
            seed=seed,
            method=self.setup.method,
        )

    def metric(self, name: str) -> Any:
        """Our metric ``name`` as configured (shrunk in quick mode)."""
        node = metric_config(self.setup, name, self.args.maps_method, self.knobs, self.args.quick)
        return instantiate(node)

    def curves(self, metric: Any, key: str = "") -> Callable[[], torch.Tensor]:
        """Our call: ``metric``'s curves ``key`` on the tie-free maps."""
        return lambda: metric(self.ctx(), self.setup.batch, self.maps).curves[key]

    def per_image(self, fn: Callable[[int], np.ndarray]) -> Callable[[], np.ndarray]:
        """The peer's call for a reference loop of one image: ``fn(i)`` for each image, stacked."""
        return lambda: np.stack([fn(i) for i in range(len(self.images))])

    def quantus(self, metric: Any, a_batch: np.ndarray | None, **more: Any) -> Any:
        """Quantus's ``metric`` called on the model, its images (numpy, channels first) and their
        targets, with the maps ``a_batch`` and ``more`` of the call's keywords."""
        return metric(
            model=self.model, **self.numpy, a_batch=a_batch, device=str(self.device), **more
        )

    def method(self, name: str) -> tuple[Any, str]:
        """Our method ``name`` as configured (shrunk in quick mode), and its settings' note."""
        node = method_config(self.setup, name, self.knobs, self.args.quick)
        return instantiate(node), settings_note(node)


# ------------------------------------------------------------------------------------- builders


def pixel_flipping(w: Work) -> Peer:
    p = Peer(
        "pixel_flipping_morf",
        "quantus.PixelFlipping",
        "fill 0 = perturb_baseline 0, features_in_step = 3 x step (Quantus ranks the map "
        "broadcast to the 3 channels; its assertion that features_in_step divides H x W, "
        "which no step can satisfy at 112 or 224 px, is lifted for the call), normalise/abs "
        "off, softmax; curves compared without our first point (the unchanged image)",
    )
    if not installed("quantus"):
        return p
    import quantus
    from quantus.helpers import asserts

    metric = w.metric("pixel_flipping_morf")
    a = np.repeat(_np(w.maps)[:, None], 3, 1)

    def theirs() -> np.ndarray:
        check = asserts.assert_features_in_step  # it checks H*W, the loop steps over C*H*W
        asserts.assert_features_in_step = lambda **kwargs: None
        try:
            q = quantus.PixelFlipping(
                features_in_step=3 * metric.step,
                perturb_baseline=float(metric.fill),
                normalise=False,
                abs=False,
                disable_warnings=True,
            )
            return np.array(w.quantus(q, a, softmax=True))
        finally:
            asserts.assert_features_in_step = check

    p.ours, p.theirs = w.curves(metric), theirs
    p.compare = lambda o, r: curve_diff(o[:, 1:], r)
    return p


def rise_loop(w: Work, insertion: bool) -> Peer:
    from bench.metrics.faithfulness import blur, rise_blur_kernel

    name = "insertion" if insertion else "deletion"
    p = Peer(
        name,
        "RISE reference loop (eclique/RISE CausalMetric)",
        "one image, one forward per step, numpy argsort of the map (scripts/bench_speed/references.py)",
    )
    metric = w.metric(name)
    images = w.images
    substrate = blur(images, rise_blur_kernel()) if insertion else torch.zeros_like(images)

    def theirs(i: int) -> np.ndarray:
        return rise_causal_curve(
            w.model, images[i], w.maps[i], metric.step, substrate[i], insertion
        )

    p.ours, p.theirs, p.compare = w.curves(metric), w.per_image(theirs), curve_diff
    return p


def dauc(w: Work) -> Peer:
    p = Peer(
        "dauc",
        "saliency-maps-metrics loop (scripts/bench_speed/references.py)",
        "the package's MultiStepMetric loop re-implemented: one image, one forward per step",
    )
    metric = w.metric("dauc")
    loop = partial(gomez_deletion_curve, w.model, max_steps=metric.max_steps)
    p.theirs = w.per_image(lambda i: loop(w.images[i], w.maps[i], target=int(w.preds[i])))
    p.ours, p.compare = w.curves(metric), curve_diff
    return p


def road(w: Work) -> Peer:
    p = Peer(
        "road_morf",
        "pytorch_grad_cam.metrics.road",
        "MoRF at 7 fractions, noise 0 on both (grad-cam draws unseeded noise), our tie "
        "noise 0, mean 0 / std 1 (grad-cam imputes the normalised tensor), our fractions "
        "set to grad-cam's percentile counts; softmax probability of the label, no diff",
    )
    if not installed("pytorch_grad_cam"):
        return p
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from bench.metrics.road import FRACTIONS, RoadMoRF

    cams = _np(w.maps)
    hw = cams[0].size
    percentiles = [round(100 * (1 - f)) for f in FRACTIONS]
    counts = []
    for q in percentiles:  # grad-cam's own rule: removed = not (cam < percentile)
        k = [hw - int((torch.from_numpy(c) < np.percentile(c, q)).sum()) for c in cams]
        if len(set(k)) > 1:
            p.note = f"percentile counts differ between images ({sorted(set(k))})"
        counts.append(k[0])
    fractions = [(k + 0.5) / hw for k in counts]
    metric = RoadMoRF(
        mean=[0.0] * 3, std=[1.0] * 3, fractions=fractions, noise=0.0, tie_noise=0.0, target="label"
    )
    goals = [ClassifierOutputSoftmaxTarget(int(t)) for t in w.targets]

    def theirs() -> np.ndarray:
        out = []
        for q in percentiles:
            m = PerturbationConfidenceMetric(
                RemoveMostRelevantFirst(q, NoisyLinearImputer(noise=0.0))
            )
            out.append(m(w.images, cams, goals, w.model, return_diff=False))
        return np.stack(out, 1)

    p.ours, p.theirs, p.compare = w.curves(metric, "probability"), theirs, curve_diff
    return p


def pointing_game(w: Work) -> Peer:
    p = Peer(
        "pointing_game",
        "quantus.PointingGame",
        "ours with tolerance 0, strict false, region masks; Quantus abs/normalise off "
        "(tie-free maps: Quantus counts any tied maximum)",
    )
    if not installed("quantus"):
        return p
    import quantus

    from bench.metrics.localisation import PointingGame

    metric = PointingGame(tolerance=0, strict=False, region="masks")
    x, a, y = _np(w.images), _np(w.maps)[:, None], w.targets.cpu().numpy()
    s = w.setup.batch.masks[:, None].float().cpu().numpy()

    def theirs() -> np.ndarray:
        q = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)
        return np.asarray(
            q(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True)
        )

    p.ours = lambda: metric(w.ctx(), w.setup.batch, w.maps).scores[""]
    p.theirs, p.compare = theirs, curve_diff
    return p


def mprt(w: Work) -> Peer:
    p = Peer(
        "mprt",
        "quantus.MPRT",
        "conf/metric/mprt.yaml (top-down cascading, batch-norm stats reset, spearman of "
        "|m|/max|m|, label) vs MPRT(layer_order=top_down, seed 42); per-layer curves",
    )
    if not installed("quantus"):
        return p
    import quantus

    metric, method, device = w.metric("mprt"), w.setup.method, w.device

    def explain(model, inputs, targets, **kwargs):
        xi = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
        return _np(method(model, xi, torch.as_tensor(np.asarray(targets), device=device).long()))

    def theirs() -> np.ndarray:
        q = quantus.MPRT(layer_order="top_down", seed=42, disable_warnings=True)
        out = w.quantus(q, None, explain_func=explain, channel_first=True)
        return np.array([out[k] for k in out if k != "original"]).T

    p.ours = lambda: metric(w.ctx(seed=42), w.setup.batch, w.setup.maps).curves["spearman_abs"]
    p.theirs, p.compare = theirs, curve_diff
    return p


def package(w: Work, key: str) -> Peer:
    """``lime`` / ``kernel_shap`` against the package called directly (:mod:`.references`)."""
    pkg = "lime" if key == "lime" else "shap"
    p = Peer(
        key,
        f"`{pkg}` package called directly",
        "the same SLIC superpixels, seeds, fill and batch size; the package's explainer "
        "per image as its README shows (our wrapper adds only the conversions)",
    )
    if not installed(pkg):
        return p
    ours, p.note = w.method(key)
    p.ours = lambda: ours(w.model, w.images, w.targets)
    p.theirs = (bare_lime if key == "lime" else bare_shap)(ours, w.model, w.images, w.targets)
    p.compare = curve_diff
    return p


def occlusion(w: Work) -> Peer:
    from captum.attr import Occlusion

    p = Peer(
        "occlusion",
        "captum.attr.Occlusion, its defaults",
        "same window, stride and fill; captum's default perturbations_per_eval = 1 (ours "
        "sends internal_batch_size occluded images per forward)",
    )
    ours, p.note = w.method("occlusion")

    def theirs() -> torch.Tensor:
        return Occlusion(w.model).attribute(
            w.images,
            sliding_window_shapes=(3, ours.window, ours.window),
            strides=(3, ours.stride, ours.stride),
            baselines=ours.fill,
            target=w.targets,
        )[:, 0]

    p.ours = lambda: ours(w.model, w.images, w.targets)
    p.theirs, p.compare = theirs, lambda o, r: float((o - r).abs().max())
    return p


#: The peers, by the name ``--peers`` takes, in the report's order.
BUILDERS: dict[str, Callable[[Work], Peer]] = {
    "pixel_flipping": pixel_flipping,
    "deletion": partial(rise_loop, insertion=False),
    "insertion": partial(rise_loop, insertion=True),
    "dauc": dauc,
    "road": road,
    "pointing_game": pointing_game,
    "mprt": mprt,
    "lime": partial(package, key="lime"),
    "kernel_shap": partial(package, key="kernel_shap"),
    "occlusion": occlusion,
}


def batched(w: Work, key: str) -> Peer:
    """``lime_batched`` / ``kernel_shap_batched`` against the package called directly (with the
    package wrapper's settings: the same superpixels and samples; other draws and solver)."""
    pkg = "lime" if key == "lime" else "shap"
    p = Peer(f"{key}_batched", f"`{pkg}` package called directly", "same superpixels and samples")
    try:
        ours, note = w.method(f"{key}_batched")
    except Exception:
        p.note = f"not available (no conf/method/{key}_batched.yaml)"
        return p
    ref, _ = w.method(key)
    p.note = note + "; values differ by design (another sampler/solver)"
    p.ours = lambda: ours(w.model, w.images, w.targets)
    p.theirs = (bare_lime if key == "lime" else bare_shap)(ref, w.model, w.images, w.targets)
    p.compare = lambda o, r: float(np.abs(_np(o) - _np(r)).max())
    return p


def peer_cases(s: Setup, args: argparse.Namespace, preset: dict, device) -> list[Peer]:
    """Each ``--peers`` peer built and warmed up (both calls once, values compared), then the
    batched surrogates' against the packages when ``--methods`` has them."""
    w = Work(s, args, preset["large" if s.large else "small"], device)
    built = [(key, partial(BUILDERS[key], w)) for key in args.peers]
    built += [
        (f"{key}_batched", partial(batched, w, key))
        for key in ("lime", "kernel_shap")
        if key in args.peers and f"{key}_batched" in args.methods
    ]
    return [warmed(key, build) for key, build in built]


def warmed(key: str, build: Callable[[], Peer]) -> Peer:
    """The built peer after one call of each side (its values compared), or a row saying why not."""
    try:
        p = build()
        if p.ours is None and not p.note:
            p.note = "not installed"
        if p.ours is not None:
            p.diff = p.compare(p.ours(), p.theirs())
    except Exception as err:
        p = Peer(key, "?", "", note=f"error: {type(err).__name__}: {err}"[:200])
    return p


def time_peers(peers: list[Peer], repeats: int, device: torch.device) -> None:
    def step(p: Peer, rep: int) -> None:
        if p.ours is None:
            return
        order = ("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours")
        for key in order:
            wall, _, _ = timed(getattr(p, key), device)
            p.times.setdefault(key, []).append(wall)

    round_robin(peers, step, repeats)


def peer_table(peers: list[Peer], model: str, images: int) -> list[str]:
    lines = [
        f"On {model}, {images} images, the maps of the maps method made tie-free (see below).",
        "",
        "| ours | peer | ours s | peer s | peer / ours | max abs diff | settings and protocol |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for p in peers:
        if p.ours is None:
            lines.append(f"| {p.name} | {p.peer} | {p.note} | | | | {p.protocol} |")
            continue
        t = p.times
        proto = p.protocol + (f" ({p.note})" if p.note else "")
        diff = "-" if p.diff is None else f"{p.diff:.1e}"
        lines.append(
            f"| {p.name} | {p.peer} | {med(t['ours'])} | {med(t['theirs'])} | "
            f"{ratio(t['theirs'], t['ours'])} | {diff} | {proto} |"
        )
    return lines
