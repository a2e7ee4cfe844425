"""A mutation score for the code that makes published numbers (issue 28, item 5).

    python scripts/mutants.py --out results/reference/mutants.md      # every mutant (make mutants)
    python scripts/mutants.py --list                                   # the list, nothing run
    python scripts/mutants.py --only road_abc_sign,rise_inverted       # some of them

A fixed, committed list of small, plausible bugs (:data:`MUTANTS`) in the methods, the metrics,
the statistics, the attribution cache's key and resuming. Each names its file, the exact original
snippet (which must occur exactly once in the file: otherwise the script stops before running
anything, so the list stays true as the code moves), the replacement, the bug it stands for and
the test files (or test node ids) that cover it. One at a time, each is applied to a temporary
copy of the tree (the checkout without ``.git``, the virtual environment, caches and ``results/``
other than ``results/reference/``) and the covering tests run there with
``python -m pytest -x -q -n 0 -p no:cacheprovider`` from the copy's root (``PYTHONPATH`` set to
it, so the copy's packages are imported, in subprocesses too; no bytecode written, so a mutant
never runs stale bytecode): tests fail = killed, tests pass = survived. A mutant whose tests
cannot even be collected (an import error) counts as killed and is marked so; one whose tests
run past ``--timeout`` counts as killed (timeout). A listed test file that does not exist (one
another branch adds) is skipped with a note, so the list can name it before it lands.

Before the mutants, the union of their covering tests runs once on the unmutated copy: a failure
there would make every mutant it covers look killed, so the script stops (``--no-baseline``
skips the check).

Each mutant's result is kept in ``results/mutants/<id>.json`` (git-ignored) with the commit it ran
on; the report (``--out``, Markdown) is built from the stored results of every mutant in the list
whose definition has not changed since, so a long run can be done in parts with ``--only`` and
reported as one. ``--fresh`` forgets the stored results first. The report has one row per mutant
(id, file, description, result, seconds, first failing test), the totals, and a section on the
survivors: each carries the reason its entry states (``survives="equivalent: ..."`` or
``"harmless: ..."``, for mutants known to survive); a survivor without one is reported as a gap,
and the script exits 1 (after writing the report) while there is one.

Why not mutmut: it mutates every operator, constant and keyword of every line, i.e. thousands of
mutants over methods/, metrics/ and the statistics, each running the whole suite (~20 minutes
here): weeks of CPU on the 2-core machine this project is developed on, most of it spent on
mutants of messages, argument checks and plumbing that no published number depends on. A short
list of the bugs that would change a published number, each against the tests meant to catch
it, runs in about an hour and says which of those tests are missing.

The script imports nothing of the project (standard library only); it needs the project's
virtual environment only for the pytest runs (``--python``, default: this interpreter).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where each mutant's result is kept between runs (git-ignored).
STORE = ROOT / "results" / "mutants"
#: The pytest options of every run (``-x``: the first failure kills the mutant).
PYTEST = ("-x", "-q", "-n", "0", "-p", "no:cacheprovider")
#: Top-level entries of the checkout never copied (results/reference/ is copied on its own).
SKIP_TOP = {".git", ".venv", "results", "build", "dist", "outputs", "multirun", ".whl", ".gl"}
#: Entries skipped at any depth.
SKIP_ANY = ("__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "*.egg-info", "*.pyc")

# ---------------------------------------------------------------------------------- covering tests

#: Value oracles of every method; on another branch when this list was written (skipped, with a
#: note, while absent).
ORACLES = "tests/methods/test_oracles.py"
REFS = "tests/methods/test_references.py"
M_SETTINGS = "tests/methods/test_settings.py"
CATALOGUE = "tests/methods/test_catalogue.py"
SURROGATES = "tests/methods/test_batched_surrogates.py"
CAM_LAYERS = "tests/methods/test_cam_layers.py"
POINTING = "tests/methods/test_pointing.py"
METHOD_VALUES = (ORACLES, REFS, M_SETTINGS)

FAITH = "tests/metrics/test_faithfulness.py"
Q_FAITH = "tests/metrics/test_quantus_faithfulness.py"
ROAD = "tests/metrics/test_road.py"
LOC = "tests/metrics/test_localisation.py"
Q_LOC = "tests/metrics/test_quantus_localisation.py"
CLASS_SENS = "tests/metrics/test_class_sensitivity.py"
COMPLEXITY = "tests/metrics/test_complexity.py"
RANDOMISATION = "tests/metrics/test_randomisation.py"
Q_SANITY = "tests/metrics/test_quantus_sanity.py"
SIMILARITY = "tests/metrics/test_similarity.py"
ROBUST = "tests/metrics/test_robustness.py"
X_SETTINGS = "tests/metrics/test_settings.py"

PAPERS = "tests/bench/test_papers.py"
REGRESS = "tests/bench/test_regress.py"
COLLATE = "tests/bench/test_collate.py"
STATS = "tests/bench/test_statistics.py"
CACHE = "tests/bench/test_cache_and_resume.py"


@dataclass(frozen=True)
class Mutant:
    """One plausible bug: ``original`` (exactly once in ``file``) becomes ``replacement``."""

    id: str
    file: str
    original: str
    replacement: str
    description: str
    tests: tuple[str, ...]
    #: Why the mutant survives, for one known to (``equivalent: ...`` or ``harmless: ...``).
    survives: str = ""

    def digest(self) -> str:
        """Identifies the definition: a stored result of another definition is not reused."""
        text = json.dumps([self.file, self.original, self.replacement, list(self.tests)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _m(id, file, original, replacement, description, tests, survives=""):  # noqa: A002
    return Mutant(id, file, original, replacement, description, tuple(tests), survives)


MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------------------ methods
    _m(
        "gradient_abs_ignored",
        "methods/gradient.py",
        "attribute(images, target=targets, abs=self.abs)",
        "attribute(images, target=targets, abs=True)",
        "Gradient ignores abs: false (VarGrad's signed gradient is taken in absolute value)",
        METHOD_VALUES,
    ),
    _m(
        "ig_n_steps_ignored",
        "methods/gradient.py",
        "            n_steps=self.n_steps,\n",
        "            n_steps=50,\n",
        "integrated gradients ignore n_steps (captum's default 50 always)",
        METHOD_VALUES,
    ),
    _m(
        "ig_baseline_ignored",
        "methods/gradient.py",
        "            baselines=self.baseline,\n            target=targets,\n            n_steps",
        "            baselines=0.0,\n            target=targets,\n            n_steps",
        "integrated gradients ignore the baseline (always 0)",
        METHOD_VALUES,
    ),
    _m(
        "deeplift_baseline_ignored",
        "methods/gradient.py",
        "_CaptumDeepLift(model).attribute(images, baselines=self.baseline, target=targets)",
        "_CaptumDeepLift(model).attribute(images, baselines=0.0, target=targets)",
        "DeepLIFT ignores its reference value (always 0)",
        METHOD_VALUES,
    ),
    _m(
        "lrp_epsilon_ignored",
        "methods/gradient.py",
        "m.rule = EpsilonRule(epsilon=self.epsilon)",
        "m.rule = EpsilonRule()",
        "LRP ignores epsilon (captum's 1e-9 always)",
        METHOD_VALUES,
    ),
    _m(
        "smoothgrad_noise_dropped",
        "methods/gradient.py",
        "x = images[img] + sigma[img, None, None, None] * noise",
        "x = images[img] + 0 * noise",
        "SmoothGrad adds no noise (the wrapped method's map, n_samples times)",
        METHOD_VALUES,
    ),
    _m(
        "smoothgrad_sum_not_mean",
        "methods/gradient.py",
        "        return total / self.n_samples\n",
        "        return total\n",
        "SmoothGrad returns the sum over its n_samples noisy maps, not their mean",
        METHOD_VALUES,
    ),
    _m(
        "vargrad_second_moment",
        "methods/gradient.py",
        "return (sq / self.n_samples - mean * mean).clamp_min(0)",
        "return (sq / self.n_samples).clamp_min(0)",
        "VarGrad returns the second moment, not the variance",
        METHOD_VALUES,
    ),
    _m(
        "gradient_shap_no_path_point",
        "methods/gradient.py",
        "point = base + alpha[:, None, None, None] * (x - base)",
        "point = x",
        "GradientSHAP takes the gradient at the input, not at a random point of the path",
        METHOD_VALUES,
    ),
    _m(
        "reduction_max_without_abs",
        "methods/base.py",
        '"max_abs": lambda a: a.abs().amax(1),',
        '"max_abs": lambda a: a.amax(1),',
        "max_abs channel pooling takes the signed maximum",
        (*METHOD_VALUES, CATALOGUE),
    ),
    _m(
        "upsample_align_corners",
        "methods/base.py",
        'mode="bilinear", align_corners=False\n            )[:, 0]',
        'mode="bilinear", align_corners=True\n            )[:, 0]',
        "maps upsampled with align_corners=True (shifted by half a layer cell)",
        (*METHOD_VALUES, CAM_LAYERS),
    ),
    _m(
        "gradcam_positive_gradients",
        "methods/cam.py",
        "        return grads.mean(dim=(2, 3))\n",
        "        return grads.clamp_min(0).mean(dim=(2, 3))\n",
        "Grad-CAM weights from the positive gradients only",
        METHOD_VALUES,
    ),
    _m(
        "cam_relu_dropped",
        "methods/cam.py",
        'return cam.clamp_min(0) if self.relu == "before_upsample" else cam',
        "return cam",
        "the CAMs' ReLU before upsampling is never applied",
        (*METHOD_VALUES, CAM_LAYERS),
    ),
    _m(
        "gradcampp_alpha_typo",
        "methods/cam.py",
        "alpha = g2 / (2 * g2 + sum_acts * g3 + 1e-6)",
        "alpha = g2 / (2 * g2 + sum_acts * g2 + 1e-6)",
        "Grad-CAM++'s alpha with g^2 for g^3 in the denominator",
        METHOD_VALUES,
    ),
    _m(
        "scorecam_no_softmax",
        "methods/cam.py",
        "acts.shape[1], masked).softmax(dim=1)",
        "acts.shape[1], masked)",
        "Score-CAM weights by the raw scores, not their softmax over channels",
        METHOD_VALUES,
    ),
    _m(
        "ablationcam_sign",
        "methods/cam.py",
        "return (base[:, None] - scores) / base[:, None]",
        "return (scores - base[:, None]) / base[:, None]",
        "Ablation-CAM weights by the score rise, not the drop",
        METHOD_VALUES,
    ),
    _m(
        "occlusion_fill_ignored",
        "methods/perturbation.py",
        "strides=(c, self.stride, self.stride),\n            baselines=self.fill,",
        "strides=(c, self.stride, self.stride),\n            baselines=0.0,",
        "occlusion ignores fill (always 0)",
        METHOD_VALUES,
    ),
    _m(
        "rise_inverted",
        "methods/perturbation.py",
        "p = probabilities(model, images[img] * masks[m][:, None])",
        "p = probabilities(model, images[img] * (1 - masks[m][:, None]))",
        "RISE map inverted: each mask weighted by the score of its complement",
        METHOD_VALUES,
    ),
    _m(
        "rise_not_divided_by_p",
        "methods/perturbation.py",
        "return sal / (n * self.p)",
        "return sal / n",
        "RISE's map not divided by p (a constant factor 1/p)",
        METHOD_VALUES,
    ),
    _m(
        "batched_lime_first_row_random",
        "methods/surrogate.py",
        "    on[:, 0] = True\n",
        "",
        "batched LIME's first sample is random, not all superpixels on (lime's data[0] = 1)",
        (*METHOD_VALUES, SURROGATES),
    ),
    _m(
        "ridge_without_intercept",
        "methods/surrogate.py",
        "xc, yc = x - xbar[:, None], y - ybar",
        "xc, yc = x, y",
        "batched LIME's ridge fit without centring (no intercept)",
        (*METHOD_VALUES, SURROGATES),
    ),
    _m(
        "kernel_shap_efficiency_dropped",
        "methods/surrogate.py",
        "rest = (fx - f0) - sol.sum(1)",
        "rest = fx - f0",
        "batched kernel SHAP's last feature gets f(x) - f(empty), not what efficiency leaves",
        (*METHOD_VALUES, SURROGATES),
    ),
    _m(
        "rollout_no_identity",
        "methods/attention.py",
        "a = 0.5 * a + 0.5 * eye",
        "a = a + 0 * eye",
        "attention rollout ignores the residual path (no identity added)",
        METHOD_VALUES,
    ),
    _m(
        "rollout_product_order",
        "methods/attention.py",
        "rollout = a if rollout is None else a @ rollout",
        "rollout = a if rollout is None else rollout @ a",
        "attention rollout multiplies the blocks in the wrong order",
        METHOD_VALUES,
    ),
    _m(
        "rollout_rows_not_renormalised",
        "methods/attention.py",
        "            a = a / a.sum(-1, keepdim=True)\n",
        "",
        "attention rollout does not renormalise the rows after the discard and the identity",
        METHOD_VALUES,
    ),
    _m(
        "raw_attention_column",
        "methods/attention.py",
        "return rows[:, 0, prefix_tokens(model) :].reshape(-1, h, w)",
        "return rows[:, prefix_tokens(model) :, 0].reshape(-1, h, w)",
        "raw attention reads the patches' attention to the class token, not the class token's row",
        METHOD_VALUES,
    ),
    _m(
        "vit_gradcam_drops_last_patch",
        "methods/attention.py",
        "out[:, prefix:].reshape(out.shape[0], h, w, out.shape[2])",
        "out[:, :-prefix].reshape(out.shape[0], h, w, out.shape[2])",
        "ViT Grad-CAM drops the last patch token, not the class token",
        METHOD_VALUES,
    ),
    _m(
        "sobel_one_direction",
        "methods/baselines.py",
        "kernels = torch.stack([gx, gx.T])[:, None]",
        "kernels = torch.stack([gx, gx])[:, None]",
        "Sobel takes the horizontal gradient twice (no vertical one)",
        METHOD_VALUES,
    ),
    _m(
        "centre_gaussian_off_centre",
        "methods/baselines.py",
        "v = torch.arange(h, device=images.device, dtype=torch.float32) - (h - 1) / 2",
        "v = torch.arange(h, device=images.device, dtype=torch.float32) - h / 2",
        "the centre baseline's Gaussian centred half a pixel low",
        (*METHOD_VALUES, POINTING, LOC),
    ),
    # ------------------------------------------------------------------------------ metrics
    _m(
        "deletion_least_salient_first",
        "metrics/faithfulness.py",
        "rank = rank_pixels(maps, self.ties,",
        "rank = rank_pixels(-maps, self.ties,",
        "deletion/insertion move the least salient pixels first",
        (FAITH, Q_FAITH, X_SETTINGS),
    ),
    _m(
        "insertion_endpoints_swapped",
        "metrics/faithfulness.py",
        "        return self.substrate_of(images), images\n",
        "        return images, self.substrate_of(images)\n",
        "insertion starts from the image and ends at the blur (a deletion)",
        (FAITH, Q_FAITH, X_SETTINGS),
    ),
    _m(
        "auc_mean_not_trapezoid",
        "metrics/faithfulness.py",
        "return (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / n",
        "return curve.mean(1)",
        "curve AUC as the mean of the points, not the trapezoid rule",
        (FAITH, Q_FAITH, X_SETTINGS),
    ),
    _m(
        "gomez_correlation_sign",
        "metrics/faithfulness.py",
        "corr = pearson(-change if not self.insertion else change, saliency)",
        "corr = pearson(change, saliency)",
        "DC correlates the score change, not the drop, with the saliency",
        (FAITH, X_SETTINGS),
    ),
    _m(
        "gomez_step_saliency_sum",
        "metrics/faithfulness.py",
        "csum[:, counts[:-1]]) / (counts[1:] - counts[:-1])",
        "csum[:, counts[:-1]])",
        "DC/IC's per-step saliency is the sum, not the mean, of the step's cells",
        (FAITH, X_SETTINGS),
    ),
    _m(
        "pixel_flipping_lerf_is_morf",
        "metrics/faithfulness.py",
        'rank_pixels(tiles if order == "morf" else -tiles)',
        "rank_pixels(tiles)",
        "pixel flipping's LeRF order is the MoRF order",
        (FAITH, Q_FAITH, X_SETTINGS),
    ),
    _m(
        "pixel_flipping_abc_sign",
        "metrics/faithfulness.py",
        "trapezoid_auc(curves[:, 1]) - trapezoid_auc(curves[:, 0])",
        "trapezoid_auc(curves[:, 0]) - trapezoid_auc(curves[:, 1])",
        "pixel flipping ABC is MoRF - LeRF",
        (FAITH, Q_FAITH, X_SETTINGS),
    ),
    _m(
        "road_abc_sign",
        "metrics/road.py",
        '"": (correct[:, 1] - correct[:, 0]).mean(1),',
        '"": (correct[:, 0] - correct[:, 1]).mean(1),',
        "ROAD's ABC is MoRF - LeRF (sign flipped)",
        (ROAD, X_SETTINGS),
    ),
    _m(
        "road_lerf_is_morf",
        "metrics/road.py",
        'out = [morf if o == "morf" else n - 1 - morf for o in (orders or self.orders)]',
        "out = [morf for o in (orders or self.orders)]",
        "ROAD's LeRF removes the most relevant pixels too",
        (ROAD, X_SETTINGS),
    ),
    _m(
        "road_imputation_leaks_removed_pixels",
        "metrics/road.py",
        "rhs = mask * _neighbour_sum(y * known)",
        "rhs = mask * _neighbour_sum(y)",
        "ROAD's imputation reads the removed pixels' own values (the leak ROAD removes)",
        (ROAD, X_SETTINGS),
    ),
    _m(
        "road_fraction_rounded",
        "metrics/road.py",
        "return [round(p * 1_000_000) * n // 1_000_000 for p in fractions]",
        "return [round(p * n) for p in fractions]",
        "ROAD removes round(p N) pixels, not floor(p N)",
        (ROAD, X_SETTINGS),
    ),
    _m(
        "pointing_tolerance_shorter_side",
        "metrics/localisation.py",
        "return 15.0 * max(height, width) / 224.0 if self.tolerance is None else self.tolerance",
        "return 15.0 * min(height, width) / 224.0 if self.tolerance is None else self.tolerance",
        "the pointing game's default tolerance from the shorter side, not the longer",
        (LOC, Q_LOC, X_SETTINGS),
    ),
    _m(
        "pointing_strict_inverted",
        "metrics/localisation.py",
        "near = d2 < tolerance**2 if strict else d2 <= tolerance**2",
        "near = d2 <= tolerance**2 if strict else d2 < tolerance**2",
        "the pointing game's strict and inclusive rules swapped",
        (LOC, Q_LOC, X_SETTINGS),
    ),
    _m(
        "first_argmax_plain_argmax",
        "metrics/localisation.py",
        "idx = is_max.float().argmax(1)",
        "idx = flat.argmax(1)",
        "the pointing game's maximum by torch.argmax of the map itself",
        (LOC, Q_LOC, CLASS_SENS, X_SETTINGS),
        survives=(
            "equivalent: torch.argmax returns the index of the first maximal value (documented, "
            "on every device), the index the first True of the tie mask gives; they differ only "
            "on a map with a NaN, which every score using first_argmax sets to NaN anyway"
        ),
    ),
    _m(
        "boxes_inclusive_end",
        "metrics/localisation.py",
        "in_u = (u >= x0) & (u < x1)",
        "in_u = (u >= x0) & (u <= x1)",
        "boxes rasterised with an inclusive right edge",
        (LOC, Q_LOC, X_SETTINGS),
    ),
    _m(
        "positive_pooling_is_abs",
        "metrics/localisation.py",
        "        r = maps.clamp_min(0)\n",
        "        r = maps.abs()\n",
        "pooling: positive takes |m| (negative relevance counted as mass)",
        (LOC, Q_LOC, CLASS_SENS, COMPLEXITY, X_SETTINGS),
    ),
    _m(
        "rank_accuracy_off_by_one",
        "metrics/localisation.py",
        "return (inside & (rank < k)).sum(1)",
        "return (inside & (rank <= k)).sum(1)",
        "relevance rank accuracy counts the |Omega| + 1 highest pixels",
        (LOC, Q_LOC, X_SETTINGS),
    ),
    _m(
        "class_sensitivity_tie_counts",
        "metrics/class_sensitivity.py",
        "return (near & (d_own < d_other)).float()",
        "return (near & (d_own <= d_other)).float()",
        "class sensitivity counts a point equidistant from both objects (tie rule flipped)",
        (CLASS_SENS, X_SETTINGS),
    ),
    _m(
        "class_sensitivity_tolerance_shorter_side",
        "metrics/class_sensitivity.py",
        "return 15.0 * max(height, width) / 224.0 if self.tolerance is None else self.tolerance",
        "return 15.0 * min(height, width) / 224.0 if self.tolerance is None else self.tolerance",
        "class sensitivity's default tolerance from the shorter side",
        (CLASS_SENS, X_SETTINGS),
    ),
    _m(
        "complexity_not_normalised",
        "metrics/complexity.py",
        "p = r / r.sum(1, keepdim=True)",
        "p = r",
        "complexity's entropy of the raw map, not of its fractional contributions",
        (COMPLEXITY, Q_LOC, X_SETTINGS),
    ),
    _m(
        "sparseness_gini_off_by_one",
        "metrics/complexity.py",
        "return ((2 * i - n - 1) * s).sum(1)",
        "return ((2 * i - n) * s).sum(1)",
        "sparseness' Gini weights 2i - N for 2i - N - 1",
        (COMPLEXITY, Q_LOC, X_SETTINGS),
    ),
    _m(
        "mprt_spearman_is_pearson",
        "metrics/similarity.py",
        "                out[s] = spearman(ref[s], other[s])\n",
        "                out[s] = pearson(ref[s], other[s])\n",
        "MPRT's Spearman similarities computed as Pearson correlations",
        (RANDOMISATION, Q_SANITY, SIMILARITY, X_SETTINGS),
    ),
    _m(
        "mprt_independent_cascades",
        "metrics/randomisation.py",
        'if order == "independent" or current is None:',
        "if current is None:",
        "MPRT order: independent randomises cumulatively (as cascading)",
        (RANDOMISATION, Q_SANITY, X_SETTINGS),
    ),
    _m(
        "efficient_mprt_sign",
        "metrics/randomisation.py",
        "h0 > 0, (h1 - h0) / h0.clamp_min(1e-300)",
        "h0 > 0, (h0 - h1) / h0.clamp_min(1e-300)",
        "efficient MPRT's relative complexity rise with the sign flipped",
        (RANDOMISATION, Q_SANITY, X_SETTINGS),
    ),
    _m(
        "max_sensitivity_one_sided_noise",
        "metrics/robustness.py",
        "return inputs + (2 * uniform_of(inputs) - 1) * radius",
        "return inputs + uniform_of(inputs) * radius",
        "max-sensitivity's perturbation drawn from U[0, r], not U[-r, r]",
        (ROBUST, X_SETTINGS),
    ),
    _m(
        "infidelity_perturbation_sign",
        "metrics/robustness.py",
        "return noise, inputs - noise",
        "return noise, inputs + noise",
        "infidelity perturbs x + I while scoring f(x) - f(x - I)",
        (ROBUST, X_SETTINGS),
    ),
    # ------------------------------------------------------------------------------ statistics
    _m(
        "wilcoxon_pratt",
        "bench/results/stats/paired.py",
        'stats.wilcoxon(nz, zero_method="wilcox", alternative="two-sided")',
        'stats.wilcoxon(d, zero_method="pratt", alternative="two-sided")',
        "the paired test keeps zero differences (Pratt) instead of dropping them",
        (PAPERS,),
    ),
    _m(
        "holm_not_monotone",
        "bench/results/stats/paired.py",
        "out[order] = np.maximum.accumulate(adjusted)",
        "out[order] = adjusted",
        "Holm's adjusted p-values not made monotone (step-down maximum dropped)",
        (PAPERS,),
    ),
    _m(
        "holm_factor_off_by_one",
        "bench/results/stats/paired.py",
        "adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])",
        "adjusted = np.minimum(1.0, (m - np.arange(m) - 1).clip(1) * p[order])",
        "Holm's factors m - 1, m - 2, ... for m, m - 1, ...",
        (PAPERS,),
    ),
    _m(
        "rank_biserial_sign",
        "bench/results/stats/paired.py",
        'out["rank_biserial"] = float((r_plus - r_minus) / (r_plus + r_minus))',
        'out["rank_biserial"] = float((r_minus - r_plus) / (r_plus + r_minus))',
        "the rank-biserial effect (and so `better`) with the sign flipped",
        (PAPERS,),
    ),
    _m(
        "bootstrap_always_percentile",
        "bench/results/stats/intervals.py",
        "                method=m,\n",
        '                method="percentile",\n',
        "the bootstrap interval is the percentile one, not BCa",
        (PAPERS,),
    ),
    _m(
        "best_direction_ignored",
        "bench/results/stats/cells.py",
        'best = g["mean"].max() if d == "higher" else g["mean"].min()',
        'best = g["mean"].max()',
        "the best cell is the highest mean whatever the metric's direction",
        (PAPERS,),
    ),
    _m(
        "better_ignores_p",
        "bench/results/stats/paired.py",
        'if direction not in ("higher", "lower") or not (np.isfinite(p) and p < alpha):',
        'if direction not in ("higher", "lower") or not np.isfinite(p):',
        "`better` names a method whatever the Holm-corrected p (the sign alone)",
        (STATS,),
    ),
    _m(
        "bootstrap_row_order",
        "bench/results/stats/intervals.py",
        "v = np.sort(raw)",
        "v = raw",
        "the interval depends on the order of the rows (shards pooled in another order)",
        (PAPERS, STATS),
    ),
    _m(
        "regress_wilcoxon_drops_zeros",
        "bench/results/regress.py",
        'stats.wilcoxon(diff, alternative="greater", zero_method="zsplit")',
        'stats.wilcoxon(diff, alternative="greater", zero_method="wilcox")',
        "the regression check's Wilcoxon drops zero differences instead of splitting them",
        (REGRESS,),
    ),
    _m(
        "regress_allowed_min",
        "bench/results/regress.py",
        "return max(self.abs, self.rel * abs(baseline)) if math.isfinite(baseline) else self.abs",
        "return min(self.abs, self.rel * abs(baseline)) if math.isfinite(baseline) else self.abs",
        "the regression margin is the smaller of abs and rel, not the larger",
        (REGRESS,),
    ),
    _m(
        "regress_worse_direction",
        "bench/results/regress.py",
        'diff = (c - b) if direction == "lower" else (b - c)',
        'diff = (b - c) if direction == "lower" else (c - b)',
        "the paired regression test asks whether the current run is better, not worse",
        (REGRESS,),
    ),
    # ------------------------------------------------------------------------------ cache, resume
    _m(
        "cache_key_without_n_samples",
        "bench/engine/cache.py",
        'CHUNK_KEYS = frozenset({"batch_size", "internal_batch_size"})',
        'CHUNK_KEYS = frozenset({"batch_size", "internal_batch_size", "n_samples"})',
        "n_samples left out of the cache key (a run with 16 samples reads the maps of 2)",
        (CACHE, M_SETTINGS, "tests/methods/test_batch_knobs.py"),
    ),
    _m(
        "cache_key_without_seed",
        "bench/engine/cache.py",
        '"seed": int(cfg.seed),',
        '"seed": 0,',
        "the seed left out of the cache key",
        (CACHE, M_SETTINGS),
    ),
    _m(
        "cache_key_without_class",
        "bench/engine/cache.py",
        "text = json.dumps([self.spec_hash, str(i), digest, int(t)])",
        "text = json.dumps([self.spec_hash, str(i), digest])",
        "the explained class left out of a map's key",
        (CACHE, M_SETTINGS),
    ),
    _m(
        "resume_appends",
        "bench/engine/io.py",
        "            self._file.truncate(resume[0])\n            self._file.seek(resume[0])\n",
        "            self._file.seek(0, os.SEEK_END)\n",
        "a resumed job appends to the partial rows instead of cutting them back",
        (CACHE,),
    ),
)

# ------------------------------------------------------------------------------------- machinery


class ListError(Exception):
    """The mutant list does not match the code (a snippet missing or repeated, a bad id)."""


def check_list(mutants: Sequence[Mutant], root: Path = ROOT) -> None:
    """Every id unique and word-like, every file present, every snippet there exactly once."""
    problems = []
    seen: set[str] = set()
    for m in mutants:
        if not re.fullmatch(r"[a-z0-9_]+", m.id) or m.id in seen:
            problems.append(f"{m.id}: ids must be unique and [a-z0-9_]")
        seen.add(m.id)
        if m.original == m.replacement or not m.original:
            problems.append(f"{m.id}: the replacement equals the original (or it is empty)")
        if m.survives and not m.survives.startswith(("equivalent: ", "harmless: ")):
            problems.append(f"{m.id}: survives must start with 'equivalent: ' or 'harmless: '")
        if not m.tests:
            problems.append(f"{m.id}: no covering tests")
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.id}: {m.file} does not exist")
            continue
        n = path.read_text().count(m.original)
        if n != 1:
            problems.append(
                f"{m.id}: its original snippet occurs {n} times in {m.file} (must be exactly once)"
                f": {m.original!r}"
            )
    if problems:
        raise ListError("\n".join(problems))


def test_file(node: str) -> str:
    """The file of a test node id (``tests/x.py::test_y[a]`` -> ``tests/x.py``)."""
    return node.split("::", 1)[0]


def present_tests(m: Mutant, root: Path) -> tuple[list[str], list[str]]:
    """The mutant's covering tests whose file exists under ``root``, and the missing files."""
    here = [t for t in m.tests if (root / test_file(t)).is_file()]
    missing = sorted({test_file(t) for t in m.tests if not (root / test_file(t)).is_file()})
    return here, missing


def _ignore(top: Path):
    def ignore(folder: str, names: list[str]) -> set[str]:
        import fnmatch

        out = {n for n in names if any(fnmatch.fnmatch(n, p) for p in SKIP_ANY)}
        if Path(folder).resolve() == top:
            out |= SKIP_TOP & set(names)
        return out

    return ignore


def copy_tree(root: Path, dest: Path) -> Path:
    """A copy of the checkout for the mutants: no .git, virtual environment, caches or results
    other than ``results/reference/`` (the committed models the tests load)."""
    tree = dest / "tree"
    shutil.copytree(root, tree, ignore=_ignore(root.resolve()), symlinks=True)
    for keep in ("results/reference", "results/README.md"):
        src = root / keep
        if src.is_dir():
            shutil.copytree(src, tree / keep, ignore=_ignore(root.resolve()), symlinks=True)
        elif src.is_file():
            (tree / keep).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / keep)
    return tree


def test_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # never a stale .pyc of a mutated file
    env.setdefault("BENCH_TEST_THREADS", "1")  # tests/conftest.py: torch's threads
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    return env


@dataclass
class Outcome:
    rc: int | None
    seconds: float
    output: str
    timed_out: bool = False


def run_pytest(
    python: str, tree: Path, tests: Sequence[str], timeout: float, first_failure: bool = True
) -> Outcome:
    """``python -m pytest`` on ``tests`` from ``tree``'s root; killed (its whole process group)
    after ``timeout`` seconds."""
    opts = list(PYTEST) if first_failure else [o for o in PYTEST if o != "-x"]
    cmd = [python, "-m", "pytest", *opts, *tests]
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=tree,
            env=test_env(tree),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        output = log.read()
    return Outcome(proc.returncode, time.monotonic() - start, output, timed_out)


_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)


def first_failing(output: str) -> str:
    """The first ``FAILED``/``ERROR`` node of pytest's short summary ("" if none)."""
    found = _FAILED.search(output)
    return found.group(2) if found else ""


def classify(out: Outcome) -> tuple[str, str]:
    """``(result, first failing test)``: ``killed``, ``killed (collection error)``, ``killed
    (timeout)``, ``survived``, or ``error`` (pytest itself failed: usage error, no tests)."""
    if out.timed_out:
        return "killed (timeout)", ""
    failing = first_failing(out.output)
    if out.rc == 0:
        return "survived", ""
    if out.rc == 1:
        return "killed", failing
    if out.rc == 2 and (
        "error during collection" in out.output or "errors during collection" in out.output
    ):
        return "killed (collection error)", failing
    if out.rc == 2 and failing:  # interrupted by an error
        return "killed (collection error)", failing
    tail = out.output.strip().splitlines()[-1:] or [""]
    return "error", f"pytest exit {out.rc}: {tail[0][:120]}"


@dataclass
class Result:
    id: str
    digest: str
    result: str
    seconds: float
    first_failure: str
    tests_run: list[str]
    tests_missing: list[str]
    commit: str
    load: list[float]
    finished: str
    python: str = field(default="")


def git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def commit_of_tree() -> str:
    """HEAD, with ``+dirty`` when tracked files differ (the report itself aside)."""
    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = [
        line
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if not line.endswith("results/reference/mutants.md")
    ]
    return head + ("+dirty" if dirty else "")


def save_baseline(out: Outcome, n_mutants: int, commit: str) -> None:
    STORE.mkdir(parents=True, exist_ok=True)
    record = dict(seconds=round(out.seconds), mutants=n_mutants, commit=commit, finished=_now())
    (STORE / "_baseline.json").write_text(json.dumps(record) + "\n")


def load_baseline() -> dict | None:
    try:
        return json.loads((STORE / "_baseline.json").read_text())
    except (OSError, ValueError):
        return None


def store_path(mid: str) -> Path:
    return STORE / f"{mid}.json"


def load_result(m: Mutant) -> Result | None:
    try:
        data = json.loads(store_path(m.id).read_text())
        r = Result(**data)
    except (OSError, ValueError, TypeError):
        return None
    return r if r.digest == m.digest() else None


def save_result(r: Result) -> None:
    STORE.mkdir(parents=True, exist_ok=True)
    store_path(r.id).write_text(json.dumps(asdict(r), indent=1) + "\n")


def apply(tree: Path, m: Mutant) -> str:
    """Write the mutated file into ``tree``; returns the original text (to restore)."""
    path = tree / m.file
    text = path.read_text()
    if text.count(m.original) != 1:
        raise ListError(f"{m.id}: snippet not exactly once in the copy of {m.file}")
    path.write_text(text.replace(m.original, m.replacement, 1))
    return text


def run_mutant(python: str, tree: Path, m: Mutant, timeout: float, commit: str) -> Result:
    tests, missing = present_tests(m, tree)
    load = [round(os.getloadavg()[0], 2)]
    if not tests:
        return Result(m.id, m.digest(), "error", 0.0, "no covering test file exists", [], missing,
                      commit, load, _now(), python)  # fmt: skip
    original = apply(tree, m)
    try:
        out = run_pytest(python, tree, tests, timeout)
    finally:
        (tree / m.file).write_text(original)
    result, failing = classify(out)
    load.append(round(os.getloadavg()[0], 2))
    return Result(m.id, m.digest(), result, round(out.seconds, 1), failing, tests, missing, commit,
                  load, _now(), python)  # fmt: skip


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def check_imports(python: str, tree: Path) -> str:
    """ "" when the copy's packages are the ones imported there, else what is imported instead (an
    installed copy of the project shadowing the mutated one would make every mutant survive)."""
    code = (
        "import bench, methods, metrics; print(bench.__file__, methods.__file__, metrics.__file__)"
    )
    out = subprocess.run(
        [python, "-c", code], cwd=tree, env=test_env(tree), capture_output=True, text=True
    )
    files = out.stdout.split()
    bad = [f for f in files if not Path(f).resolve().is_relative_to(tree.resolve())]
    if out.returncode != 0 or len(files) != 3 or bad:
        return (out.stderr.strip().splitlines() or [""])[-1] or " ".join(bad)
    return ""


def baseline(python: str, tree: Path, mutants: Iterable[Mutant], timeout: float) -> Outcome:
    """The union of the mutants' covering tests on the unmutated copy (every failure listed)."""
    tests = sorted({t for m in mutants for t in present_tests(m, tree)[0]})
    return run_pytest(python, tree, tests, timeout, first_failure=False)


# ------------------------------------------------------------------------------------- the report


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu or platform.processor() or 'unknown CPU'}), {platform.system()}"


def report(mutants: Sequence[Mutant], results: dict[str, Result], notes: Sequence[str]) -> str:
    """The Markdown report of every mutant of the list (run or not)."""
    done = [results[m.id] for m in mutants if m.id in results]
    lines = [*_report_head(done), *_report_totals(mutants, results, done)]
    lines += _report_table(mutants, results)
    survived = [r for r in done if r.result == "survived"]
    errors = [r for r in done if r.result == "error"]
    lines += ["", "## Survivors", ""]
    if not survived:
        lines.append("None.")
    by_id = {m.id: m for m in mutants}
    for r in survived:
        m = by_id[r.id]
        reason = m.survives or "**gap**: no reason stated in the list; a test is missing."
        lines += [
            f"- `{m.id}` ({m.file}): {m.description}. Tests run: "
            + ", ".join(f"`{t}`" for t in r.tests_run)
            + f". {reason}",
        ]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- `{r.id}`: {r.first_failure}" for r in errors]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _report_head(done: Sequence[Result]) -> list[str]:
    """The report's title, what made it, and the run's commit, machine, load and time."""
    commits = sorted({r.commit for r in done})
    missing = sorted({f for r in done for f in r.tests_missing})
    loads = [x for r in done for x in r.load]
    total = sum(r.seconds for r in done)
    lines = [
        "# Mutation score",
        "",
        "Made by `make mutants` (`scripts/mutants.py --out results/reference/mutants.md`): a fixed "
        "list of small, plausible bugs in the code that makes published numbers (methods, "
        "metrics, statistics, the cache key, resuming), each applied alone to a copy of the tree "
        "and run against the tests that should catch it (`pytest -x`); killed = a test failed. "
        "The list, the covering tests and the reasons for known survivors live in the script.",
        "",
        f"- Commit: {', '.join(f'`{c}`' for c in commits) or '—'}"
        + (" (results of parts run at different commits)" if len(commits) > 1 else ""),
        f"- Machine: {machine()}; Python {platform.python_version()}; tests run with one torch "
        "thread (`BENCH_TEST_THREADS=1`, `OMP_NUM_THREADS=1`), `-n 0`.",
        "- Load average (1 min) around the mutants' runs: "
        + (
            f"min {min(loads):.2f}, mean {sum(loads) / len(loads):.2f}, max {max(loads):.2f} "
            "(other engineers' jobs share the cores: seconds are wall time under that load)"
            if loads
            else "—"
        ),
        f"- Run time of the mutants' tests: {total / 60:.1f} min in all"
        + (
            f" (finished {min(r.finished for r in done)} to {max(r.finished for r in done)})"
            if done
            else ""
        ),
    ]
    base = load_baseline()
    if base:
        lines.append(
            f"- Before the mutants, the covering tests of {base['mutants']} mutant(s) passed "
            f"unmutated in {base['seconds']} s (commit `{base['commit']}`, {base['finished']})."
        )
    absent = ", ".join(f"`{f}`" for f in missing)
    if missing:
        lines.append(
            f"- Covering test files absent at this commit, skipped: {absent} (listed so that "
            "the list is right once they land)."
        )
    return lines


def _report_totals(
    mutants: Sequence[Mutant], results: dict[str, Result], done: Sequence[Result]
) -> list[str]:
    """The totals: killed, survived (explained or gaps), errors, not run, and the score."""
    killed = [r for r in done if r.result.startswith("killed")]
    survived = [r for r in done if r.result == "survived"]
    errors = [r for r in done if r.result == "error"]
    by_id = {m.id: m for m in mutants}
    explained = [r for r in survived if by_id[r.id].survives]
    gaps = [r for r in survived if not by_id[r.id].survives]
    not_run = [m.id for m in mutants if m.id not in results]
    lines = [
        "",
        "## Totals",
        "",
        f"**{len(mutants)} mutants: {len(killed)} killed, {len(survived)} survived "
        f"({len(explained)} equivalent or harmless, {len(gaps)} gaps)"
        + (f", {len(errors)} errors" if errors else "")
        + (f", {len(not_run)} not run" if not_run else "")
        + ".**",
    ]
    if done:
        score = len(killed) / max(1, len(done) - len(explained) - len(errors))
        lines.append(
            f"Mutation score (killed / non-equivalent mutants run): {score:.0%}"
            f" ({len(killed)} / {len(done) - len(explained) - len(errors)})."
        )
    collection = [r for r in killed if r.result != "killed"]
    if collection:
        lines.append(
            "Killed other than by a failing test: "
            + ", ".join(f"`{r.id}` ({r.result.removeprefix('killed ')})" for r in collection)
            + "."
        )
    return lines


def _report_table(mutants: Sequence[Mutant], results: dict[str, Result]) -> list[str]:
    """One row per mutant: id, file, description, result, seconds, first failing test."""
    lines = [
        "",
        "## Mutants",
        "",
        "| id | file | description | result | seconds | first failing test |",
        "|---|---|---|---|---:|---|",
    ]
    for m in mutants:
        r = results.get(m.id)
        result = r.result if r else "not run"
        if r and r.result == "survived":
            result = "**survived**" + (" (explained)" if m.survives else " (gap)")
        lines.append(
            f"| `{m.id}` | `{m.file}` | {_cell(m.description)} | {result} | "
            f"{'' if r is None else f'{r.seconds:.0f}'} | "
            f"{'' if not r or not r.first_failure else '`' + _cell(r.first_failure) + '`'} |"
        )
    return lines


# ------------------------------------------------------------------------------------------ main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default="", help="comma-separated mutant ids to run (default: all)")
    p.add_argument("--list", action="store_true", help="print the list and exit")
    p.add_argument("--out", type=Path, help="write the Markdown report there")
    p.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per mutant's tests (killed after)"
    )
    p.add_argument(
        "--baseline-timeout", type=float, default=3600.0, help="seconds for the unmutated run"
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    p.add_argument("--fresh", action="store_true", help="forget the stored results first")
    p.add_argument(
        "--report-only", action="store_true", help="run nothing; report the stored results"
    )
    p.add_argument(
        "--note", action="append", default=[], help="a line added to the report's header"
    )
    p.add_argument("--python", default=sys.executable, help="the interpreter that runs pytest")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        check_list(MUTANTS)
    except ListError as err:
        print(f"mutants: the list does not match the code:\n{err}", file=sys.stderr)
        return 2
    by_id = {m.id: m for m in MUTANTS}
    only = [s for s in args.only.split(",") if s]
    unknown = [s for s in only if s not in by_id]
    if unknown:
        print(f"mutants: unknown id(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    chosen = [by_id[s] for s in only] if only else list(MUTANTS)
    if args.list:
        for m in chosen:
            print(f"{m.id:42} {m.file:30} {m.description}")
            print(
                f"{'':42} tests: {' '.join(m.tests)}"
                + (f"\n{'':42} {m.survives}" if m.survives else "")
            )
        return 0
    if args.fresh and STORE.is_dir():
        shutil.rmtree(STORE)
    notes: list[str] = args.note
    if not args.report_only:
        commit = commit_of_tree()
        with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
            tree = copy_tree(ROOT, Path(tmp))
            wrong = check_imports(args.python, tree)
            if wrong:
                print(f"mutants: the copy's packages are not imported there: {wrong}",
                      file=sys.stderr)  # fmt: skip
                return 1
            if not args.no_baseline:
                print(f"baseline: the covering tests of {len(chosen)} mutant(s), unmutated ...",
                      flush=True)  # fmt: skip
                base = baseline(args.python, tree, chosen, args.baseline_timeout)
                if base.rc != 0 or base.timed_out:
                    print(base.output[-4000:], file=sys.stderr)
                    print(f"mutants: the unmutated tests fail (exit {base.rc}); fix that first",
                          file=sys.stderr)  # fmt: skip
                    return 1
                save_baseline(base, len(chosen), commit)
                print(f"baseline passed in {base.seconds:.0f} s", flush=True)
            for i, m in enumerate(chosen, 1):
                r = run_mutant(args.python, tree, m, args.timeout, commit)
                save_result(r)
                extra = f" ({r.first_failure})" if r.first_failure else ""
                print(f"[{i}/{len(chosen)}] {m.id}: {r.result} in {r.seconds:.0f} s{extra}",
                      flush=True)  # fmt: skip
    results = {m.id: r for m in MUTANTS if (r := load_result(m)) is not None}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(MUTANTS, results, notes))
        print(f"wrote {args.out}")
    gaps = [i for i, r in results.items() if r.result == "survived" and not by_id[i].survives]
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
