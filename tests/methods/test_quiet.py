"""Methods keep a sweep's log readable: no per-call captum warning, no per-image lime bar, shap at WARNING."""

from __future__ import annotations

import warnings

import torch
from hydra import compose, initialize_config_dir

from bench import ROOT
from bench.config.schema import register
from bench.methods.gradient import Gradient
from bench.methods.superpixel import Lime


def test_captum_requires_grad_warning_is_not_shown(tiny_cnn, tiny_images):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = Gradient()(tiny_cnn, tiny_images, torch.zeros(4, dtype=torch.long))
    assert torch.isfinite(maps).all()
    assert not [w for w in caught if "did not already require gradients" in str(w.message)]
    assert not tiny_images.requires_grad


def test_lime_draws_no_progress_bar_and_leaves_lime_as_it_was(tiny_cnn, tiny_images, capsys):
    from lime import lime_image

    before = lime_image.tqdm
    maps = Lime(n_samples=8, n_segments=4, batch_size=8)(
        tiny_cnn, tiny_images[:2], torch.zeros(2, dtype=torch.long)
    )
    assert maps.shape == (2, 16, 16)
    err = capsys.readouterr().err
    assert "it/s" not in err and "8/8" not in err, err
    assert lime_image.tqdm is before


def test_shap_logger_is_held_at_warning_in_bench_runs():
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.job_logging.loggers.shap.level == "WARNING"
    assert cfg.hydra.job_logging.root.handlers == ["console", "file"]  # Hydra's default kept
