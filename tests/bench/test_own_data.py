"""A team's own data and model on the first try: masks, float images, the class count from the
model, the pointing tolerance's scale, and one-line errors for what is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.api import compose
from bench.core.batch import collate
from bench.core.errors import ConfigError
from bench.data.files import Preprocess
from bench.data.folder import FolderDataset
from bench.engine.run import run
from bench.metrics.localisation import PointingGame
from tests.bench._fixtures import MEAN, STD, jpeg
from tests.metrics._loc_helpers import make_batch, make_ctx

SIZE = [32, 48]


def write_own(root):
    """Two images with boxes and masks (one as a PNG, one as a .npy), one float image."""
    jpeg(root / "a.jpg", 50, 40, seed=1)
    mask_a = np.zeros((40, 50), dtype=np.uint8)
    mask_a[5:20, 10:30] = 255
    Image.fromarray(mask_a).save(root / "a_mask.png")
    pixels = np.random.default_rng(0).random((30, 60, 3), dtype=np.float32)
    np.save(root / "b.npy", pixels)
    mask_b = np.zeros((30, 60), dtype=bool)
    mask_b[10:20, 40:50] = True
    np.save(root / "b_mask.npy", mask_b)
    (root / "labels.csv").write_text(
        "image,label,x0,y0,x1,y1,mask\n"
        "a.jpg,0,10,5,30,20,a_mask.png\n"
        "b.npy,2,40,10,50,20,b_mask.npy\n"
    )
    return root, pixels, mask_a > 0, mask_b


def test_masks_from_images_and_arrays_and_float_images(tmp_path):
    root, pixels, mask_a, mask_b = write_own(tmp_path)
    ds = FolderDataset(str(root), SIZE, MEAN, STD, num_classes=4)
    assert ds.fields == {"boxes", "masks"} and ds.num_classes == 4
    a, b = ds[0], ds[1]
    assert a.mask.shape == (32, 48) and a.mask.dtype == torch.bool and b.orig_size == (30, 60)
    pre = Preprocess(SIZE, MEAN, STD)
    frame = pre.frame(50, 40)
    assert torch.equal(a.mask, pre.mask(mask_a, frame))
    # the float image is resized without quantising to 8 bits (PIL's bilinear in float mode)
    ref = np.stack(
        [
            np.asarray(Image.fromarray(pixels[..., c], mode="F").resize((48, 32), Image.BILINEAR))
            for c in range(3)
        ]
    )
    expect = (torch.from_numpy(ref) - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[
        :, None, None
    ]
    torch.testing.assert_close(b.image, expect)
    assert len(torch.unique(b.image[0])) > 256  # more levels than an 8-bit image has
    batch = collate([a, b])
    assert batch.masks.shape == (2, 32, 48) and batch.fields == {"boxes", "masks"}


def test_bad_images_and_masks_name_the_file(tmp_path):
    root, *_ = write_own(tmp_path)
    np.save(root / "b.npy", np.full((30, 60, 3), 2.0, dtype=np.float32))
    with pytest.raises(
        ConfigError, match=r"b.npy: pixel values in \[2, 2\]; accepted: finite values in \[0, 1\]"
    ):
        FolderDataset(str(root), SIZE, MEAN, STD)[1]
    np.save(root / "b_mask.npy", np.zeros((10, 10), dtype=bool))
    np.save(root / "b.npy", np.zeros((30, 60, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="b_mask.npy: a mask of 10x10 px for an image of 30x60"):
        FolderDataset(str(root), SIZE, MEAN, STD)[1]
    (root / "a.jpg").write_bytes((root / "a.jpg").read_bytes()[:200])  # truncated
    with pytest.raises(ConfigError, match="a.jpg: cannot read the image"):
        FolderDataset(str(root), SIZE, MEAN, STD)[0]


def test_the_class_count_comes_from_the_model_not_the_largest_label(tmp_path):
    root, *_ = write_own(tmp_path)  # labels 0 and 2 only
    cfg = compose(
        "model=custom",
        "trust_code=true",
        "model.module=tests.methods.test_cam_layers.GapNet",
        "model.args={num_classes: 5}",
        "model.input_size=[32,48]",
        f"model.mean={MEAN}",
        f"model.std={STD}",
        "dataset=folder",
        f"dataset.root={root}",
        "method=gradcam",
        "metric=[relevance_mass_accuracy,pointing_game]",
        resolve=False,
    )
    assert cfg.model.num_classes is None  # counted by the loader, then seen by the dataset
    record = run(cfg, tmp_path / "job")
    assert record["status"] == "completed" and record["dataset"]["num_classes"] == 5
    assert record["rows"] == 4


def test_mask_metrics_on_a_dataset_with_boxes_only_say_how_to_score_boxes(tmp_path):
    root, *_ = write_own(tmp_path)
    (root / "boxes.csv").write_text("image,label,x0,y0,x1,y1\na.jpg,0,10,5,30,20\n")
    cfg = compose(
        "model=custom",
        "trust_code=true",
        "model.module=tests.methods.test_cam_layers.GapNet",
        "model.args={num_classes: 3}",
        "model.input_size=[32,48]",
        f"model.mean={MEAN}",
        f"model.std={STD}",
        "dataset=folder",
        f"dataset.root={root}",
        "dataset.labels=boxes.csv",
        "metric=[relevance_mass_accuracy]",
        resolve=False,
    )
    with pytest.raises(ConfigError, match=r"metric.relevance_mass_accuracy.region=boxes"):
        run(cfg, tmp_path / "job")


def test_a_custom_model_without_its_normalisation_is_one_line(tmp_path):
    cfg = compose(
        "model=custom",
        "trust_code=true",
        "model.module=tests.methods.test_cam_layers.GapNet",
        resolve=False,
    )
    with pytest.raises(ConfigError, match=r"^model.mean, model.std are not set"):
        run(cfg, tmp_path)


def test_the_pointing_tolerance_scales_with_the_image_and_zero_means_inside():
    # a 10x10 box in a 224 px image and in a 448 px one, the maximum 20 px from the box
    for side, hit in ((224, False), (448, True)):  # 15 px at 224, 30 px at 448
        maps = torch.zeros(1, side, side)
        maps[0, 50, 30] = 1.0  # (u, v) = (30, 50); the box spans u in [50, 60), v in [50, 60)
        batch = make_batch(maps, boxes=[[[50.0, 50.0, 60.0, 60.0]]])
        assert PointingGame(tolerance=None)(make_ctx(), batch, maps).scores[""].item() == float(hit)
    maps = torch.zeros(1, 20, 20)
    maps[0, 5, 5] = 1.0
    inside = make_batch(maps, boxes=[[[5.0, 5.0, 6.0, 6.0]]])
    outside = make_batch(maps, boxes=[[[6.0, 5.0, 7.0, 6.0]]])
    for strict in (True, False):  # tolerance 0: the maximum must lie in the region, strict or not
        game = PointingGame(tolerance=0, strict=strict)
        assert game(make_ctx(), inside, maps).scores[""].item() == 1.0
        assert game(make_ctx(), outside, maps).scores[""].item() == 0.0
