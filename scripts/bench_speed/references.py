"""The peers' own code: the ``lime`` and ``shap`` packages called directly, and the published
reference loops (RISE's, saliency-maps-metrics') written as their authors run them: one image at
a time, one forward pass per step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.core.rng import per_image_seeds
from bench.methods.base import batch_limit
from bench.methods.superpixel import lime_progress_off, superpixels


def _segments(cfg: Any, images: torch.Tensor) -> np.ndarray:
    return superpixels(images, cfg.n_segments, cfg.compactness, cfg.slic_sigma).cpu().numpy()


def bare_lime(cfg: Any, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor):
    """``lime.lime_image`` on each image with the settings of our ``Lime`` ``cfg`` (same seeds,
    superpixels, hide colour and batch size), as lime's README shows; a call that returns the maps."""
    from lime import lime_image

    def classify(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2).to(images.device)
        with torch.no_grad():
            return model(x).softmax(-1).cpu().numpy()

    def run() -> torch.Tensor:
        seg = _segments(cfg, images)
        hwc = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
        settings = {
            "top_labels": None,
            "hide_color": cfg.hide_color,
            "num_samples": cfg.n_samples,
            "batch_size": batch_limit(cfg.batch_size, images.device) or cfg.n_samples,
        }
        out = np.zeros(seg.shape, dtype=np.float32)
        for i, seed in enumerate(per_image_seeds(images, cfg.seed)):
            label, sp = int(targets[i]), seg[i]
            explainer = lime_image.LimeImageExplainer(cfg.kernel_width, random_state=seed)
            with lime_progress_off(lime_image):
                found = explainer.explain_instance(
                    hwc[i], classify, (label,), segmentation_fn=lambda _, sp=sp: sp, **settings
                )
            weights = np.zeros(sp.max() + 1, dtype=np.float32)
            features, values = zip(*found.local_exp[label], strict=True)
            weights[list(features)] = values
            out[i] = weights[sp]
        return torch.from_numpy(out)

    return run


def bare_shap(cfg: Any, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor):
    """``shap.KernelExplainer`` on each image with the settings of our ``KernelShap`` ``cfg``
    (its blur fill, seeds, superpixels and batch size); a call that returns the maps."""
    import shap

    def value_of(x: np.ndarray, sp: np.ndarray, label: int, blurred: np.ndarray) -> Callable:
        def value(z: np.ndarray) -> np.ndarray:
            batch = np.where(z[:, sp].astype(bool)[..., None], x[None], blurred[None])
            size = batch_limit(cfg.batch_size, images.device) or len(batch)
            res = []
            for k in range(0, len(batch), size):
                xt = torch.from_numpy(batch[k : k + size].astype(np.float32)).permute(0, 3, 1, 2)
                with torch.no_grad():
                    res.append(model(xt.to(images.device)).softmax(-1)[:, label].cpu().numpy())
            return np.concatenate(res)

        return value

    def run() -> torch.Tensor:
        seg = _segments(cfg, images)
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        out = np.zeros(seg.shape, dtype=np.float32)
        for i, seed in enumerate(per_image_seeds(images, cfg.seed)):
            m = int(seg[i].max()) + 1
            # a masker per image: shap's caches the blur under id() of a temporary array
            blur = f"blur({cfg.blur_size},{cfg.blur_size})"
            masker = shap.maskers.Image(blur, shape=hwc.shape[1:])
            blurred = masker(np.zeros(hwc[i].size, dtype=bool), hwc[i])[0][0]
            state = np.random.get_state()
            try:
                np.random.seed(seed)
                value = value_of(hwc[i], seg[i], int(targets[i]), blurred)
                phi = shap.KernelExplainer(value, np.zeros((1, m))).shap_values(
                    np.ones((1, m)), nsamples=cfg.n_samples, silent=True, l1_reg=False
                )
            finally:
                np.random.set_state(state)
            out[i] = np.asarray(phi, dtype=np.float32).reshape(-1)[:m][seg[i]]
        return torch.from_numpy(out)

    return run


def rise_causal_curve(
    model: torch.nn.Module,
    image: torch.Tensor,
    smap: torch.Tensor,
    step: int,
    substrate: torch.Tensor,
    insertion: bool,
) -> np.ndarray:
    """RISE's ``CausalMetric.single_run`` (eclique/RISE, evaluation.py) on one image ``[3, H, W]``:
    the probability of the class the model predicts for the image after each ``step`` pixels (in
    order of decreasing saliency) are moved from the start (the image, or ``substrate`` for
    insertion) to the finish (``substrate``, or the image); one forward pass per step."""
    hw = smap.numel()
    n_steps = (hw + step - 1) // step
    start = (substrate if insertion else image).clone()
    finish = image if insertion else substrate
    salient = np.flip(np.argsort(smap.cpu().numpy().reshape(-1)))
    scores = np.empty(n_steps + 1)
    with torch.no_grad():
        c = int(model(image[None]).argmax(1))
        for i in range(n_steps + 1):
            scores[i] = float(model(start[None]).softmax(1)[0, c])
            coords = torch.from_numpy(salient[step * i : step * (i + 1)].copy()).to(image.device)
            start.view(3, hw)[:, coords] = finish.reshape(3, hw)[:, coords]
    return scores


def gomez_deletion_curve(
    model: torch.nn.Module, image: torch.Tensor, smap: torch.Tensor, max_steps: int, target: int
) -> np.ndarray:
    """saliency-maps-metrics' ``MultiStepMetric`` (DAUC: deletion, zeros as the substrate) on one
    image ``[3, H, W]`` with its map ``[H, W]``: the target's probability after each step of
    ``hw // max_steps`` pixels is zeroed, most salient first; one forward pass per step."""
    total = smap.numel()
    per = total // min(max_steps, total)
    order = torch.from_numpy(np.argsort(-smap.cpu().numpy().reshape(-1), kind="stable"))
    keep = torch.ones(total, device=image.device)
    scores = []
    with torch.no_grad():
        for k in (0, *range(per, total, per), total):
            keep[order[:k].to(image.device)] = 0
            masked = image * keep.view(image.shape[-2:])
            scores.append(float(model(masked[None]).softmax(1)[0, target]))
    return np.array(scores)
