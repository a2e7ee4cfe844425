"""What the benchmark runs: the models, metrics and methods, and how much of each per mode."""

from __future__ import annotations

from typing import Any

MODELS = ("shapes_cnn", "resnet18", "resnet50")
TORCHVISION = {"resnet18", "resnet50"}
METRICS = (
    "deletion",
    "insertion",
    "pixel_flipping_morf",
    "road_morf",
    "road_abc",
    "dauc",
    "iauc",
    "efficient_mprt",
    "mprt",
    "infidelity",
    "max_sensitivity",
    "pointing_game",
)
METHODS = (
    "occlusion",
    "rise",
    "feature_ablation",
    "lime",
    "kernel_shap",
    "lime_batched",
    "kernel_shap_batched",
)
#: Methods that a checkout may lack (conf/method/<name>.yaml): a row that says so, not a failure.
OPTIONAL_METHODS = {"lime_batched", "kernel_shap_batched"}
PACKAGES = ("torch", "torchvision", "captum", "quantus", "grad-cam", "lime", "shap")
SCALING_AXES = ("images", "size", "chunk")


def _scaling(values: list[int], size: int | None, images: int | None, chunk: int | None, steps):
    return {"values": values, "size": size, "images": images, "chunk": chunk, "steps": steps}


#: What each mode runs. ``small`` = the embedded CNN, ``large`` = the torchvision models.
#: ``steps``: perturbation steps of the curve metrics (None = the config's); ``samples``: samples,
#: masks or superpixels of the methods (None = the config's); ``only``: metrics/methods per model
#: (None = all); ``scaling``: per axis, its values and the other axes' (None = the axis's default).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "small": {"images": 2, "steps": 16, "samples": 64, "perturb": 4},
        "large": {"images": 1, "steps": 4, "samples": 16, "perturb": 3},
        "only": {
            "resnet18": set(METRICS) - {"mprt", "road_abc", "iauc"} | set(METHODS),
            "resnet50": {"deletion", "road_morf", "occlusion", "rise"},
        },
        "peer_images": 2,
        "scaling": {
            "images": _scaling([1, 2, 4], size=224, images=None, chunk=256, steps=4),
            "size": _scaling([112, 224, 448], size=None, images=1, chunk=256, steps=4),
            "chunk": _scaling([4, 16, 64], size=112, images=2, chunk=None, steps=16),
        },
    },
    "full": {
        "small": {"images": 32, "steps": None, "samples": None, "perturb": None},
        "large": {"images": 4, "steps": None, "samples": None, "perturb": None},
        "only": {},
        "peer_images": 16,
        "scaling": {
            "images": _scaling(
                [8, 16, 32, 64, 128, 256], size=224, images=None, chunk=256, steps=56
            ),
            "size": _scaling([112, 224, 448], size=None, images=8, chunk=256, steps=56),
            "chunk": _scaling([16, 64, 256], size=224, images=8, chunk=None, steps=56),
        },
    },
}


def preset_text(knobs: dict) -> str:
    """One model size's quick settings, as the report states them."""
    return (
        f"{knobs['images']} image(s), {knobs['steps']} curve steps, {knobs['samples']} "
        f"samples/masks/windows, {knobs['perturb']} perturbations"
    )
