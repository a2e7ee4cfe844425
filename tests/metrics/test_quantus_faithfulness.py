"""Deletion / insertion and MoRF / LeRF pixel flipping against Quantus 0.6's PixelFlipping.

Configured the same way, the curves agree within 1e-4. The protocol differences that remain, each
checked below: Quantus' curve has no point for the unchanged image and its AUC is ``np.trapz``
with ``dx = 1`` over the ``n`` perturbed points, where ours (RISE's) is the trapezoid over
``n + 1`` points on [0, 1]; Quantus ranks the map broadcast to every channel, so one of our
pixel steps is ``3 * step`` Quantus features; its "black" fill is the image minimum (our
``fill: min``), its numeric fill our numeric ``fill``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.metrics.faithfulness import Deletion, Insertion, LeRF, MoRF, blur, rise_blur_kernel
from tests.metrics._faith_helpers import distinct_maps, make_batch, make_ctx, tiny_cnn

quantus = pytest.importorskip("quantus")

B, H, W, STEP = 3, 6, 8, 4  # Quantus asserts that features_in_step (3 * STEP) divides H * W


def quantus_curves(model, images, maps, targets, *, baseline=0.0, perturb_func=None):
    kwargs = dict(features_in_step=3 * STEP, normalise=False, abs=False, disable_warnings=True)
    if perturb_func is not None:
        kwargs["perturb_func"] = perturb_func
    else:
        kwargs["perturb_baseline"] = baseline
    metric = quantus.PixelFlipping(**kwargs)
    out = metric(
        model=model,
        x_batch=images.numpy(),
        y_batch=targets.numpy(),
        a_batch=maps[:, None].expand(-1, 3, -1, -1).numpy().copy(),
        device="cpu",
        softmax=True,
    )
    return np.array(out)


@pytest.fixture(scope="module")
def case():
    model = tiny_cnn()
    images = torch.randn(B, 3, H, W, generator=torch.Generator().manual_seed(11))
    return model, images, distinct_maps(B, H, W, seed=12), torch.tensor([0, 2, 1])


def check(ours, theirs):
    curve = ours.curves[""].numpy()
    assert np.abs(curve[:, 1:] - theirs).max() < 1e-4
    n = theirs.shape[1]
    quantus_auc = ((theirs[:, 1:] + theirs[:, :-1]) / 2).sum(1)  # np.trapz(dx=1), gone in numpy 2
    # ours = (quantus' trapezoid + the first segment, from the unchanged image) / n
    assert (
        np.abs(ours.scores[""].numpy() - (quantus_auc + (curve[:, 0] + curve[:, 1]) / 2) / n).max()
        < 1e-4
    )


def test_deletion_matches_quantus_pixel_flipping(case):
    model, images, maps, _ = case
    preds = model(images).argmax(1)
    ours = Deletion(step=STEP)(make_ctx(model), make_batch(images), maps)
    check(ours, quantus_curves(model, images, maps, preds, baseline=0.0))


def test_insertion_matches_quantus_with_an_insertion_perturbation(case):
    model, images, maps, _ = case
    preds = model(images).argmax(1)
    blurred = blur(images, rise_blur_kernel())
    original = images.numpy().reshape(B, -1)

    def insert(arr, indices, **kwargs):  # Quantus' perturb_func contract: flat [B, C*H*W] + indices
        out = arr.copy()
        np.put_along_axis(out, indices, np.take_along_axis(original, indices, 1), 1)
        return out

    ours = Insertion(step=STEP)(make_ctx(model), make_batch(images), maps)
    assert torch.allclose(
        ours.curves[""][:, 0], model(blurred).softmax(1).gather(1, preds[:, None])[:, 0]
    )
    check(ours, quantus_curves(model, blurred, maps, preds, perturb_func=insert))


@pytest.mark.parametrize(("fill", "baseline"), [(0.0, 0.0), ("min", "black"), ("max", "white")])
def test_morf_lerf_match_quantus(case, fill, baseline):
    model, images, maps, targets = case
    batch = make_batch(images, targets)
    morf = MoRF(step=STEP, fill=fill)(make_ctx(model), batch, maps)
    check(morf, quantus_curves(model, images, maps, targets, baseline=baseline))
    lerf = LeRF(step=STEP, fill=fill)(make_ctx(model), batch, maps)
    check(
        lerf, quantus_curves(model, images, -maps, targets, baseline=baseline)
    )  # LeRF = MoRF of -m
