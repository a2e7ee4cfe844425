"""The file-backed loaders (VOC, COCO, ImageNet, own folder) on tiny fixtures in the real formats."""

from __future__ import annotations

import pytest
import torch

from bench.core.batch import collate
from bench.core.errors import ConfigError
from bench.data.coco import COCODataset
from bench.data.files import Preprocess
from bench.data.folder import FolderDataset
from bench.data.imagenet import ImageNetDataset
from bench.data.voc import VOC_CLASSES, VOCDataset
from tests.bench._fixtures import MEAN, STD, write_coco, write_folder, write_imagenet, write_voc

SIZE = [32, 48]


def by_id(ds):
    return {ds[i].id: ds[i] for i in range(len(ds))}


def test_voc_pairs_boxes_difficult(tmp_path):
    write_voc(tmp_path)
    ds = VOCDataset(str(tmp_path / "VOCdevkit"), SIZE, MEAN, STD)
    assert ds.fields == {"boxes"} and ds.num_classes == 20
    s = by_id(ds)
    # one pair per present class; the all-difficult bus and the empty image give none
    assert list(s) == ["000001:dog", "000001:person", "000002:cat", "000003:car"]
    assert ds.sample_ids == list(s)
    dog = s["000001:dog"]
    assert dog.target == VOC_CLASSES.index("dog")
    assert dog.orig_size == (90, 120) and dog.image.shape == (3, 32, 48)
    assert dog.boxes.tolist() == [
        [9.0, 19.0, 60.0, 80.0]
    ]  # 1-based inclusive -> 0-based exclusive end
    car = s["000003:car"]  # multi-instance, the difficult box kept in the region
    assert car.boxes.tolist() == [[4.0, 4.0, 20.0, 20.0], [49.0, 49.0, 70.0, 70.0]]
    # paper rule: distractor present and boxes < 1/4 of the image
    assert car.difficult and not dog.difficult and not s["000002:cat"].difficult
    batch = collate([dog, car])
    assert batch.difficult.tolist() == [False, True] and batch.orig_sizes.tolist() == [
        [90, 120],
        [96, 96],
    ]


def test_voc_flag_file_and_mapping(tmp_path):
    voc = write_voc(tmp_path)
    flags = tmp_path / "difficult.txt"
    flags.write_text("000001 dog\n000002:cat\n")
    mapping = {c: 100 + i for i, c in enumerate(VOC_CLASSES)}
    ds = VOCDataset(
        str(voc),
        SIZE,
        MEAN,
        STD,
        difficult_file=str(flags),
        class_indices=mapping,
        model_num_classes=1000,
    )
    s = by_id(ds)
    assert [s[k].difficult for k in s] == [True, False, True, False]
    assert s["000001:person"].target == 100 + VOC_CLASSES.index("person")
    assert ds.num_classes == 1000
    with pytest.raises(ConfigError, match="outside 0..99"):
        VOCDataset(str(voc), SIZE, MEAN, STD, class_indices=mapping, model_num_classes=100)
    with pytest.raises(ConfigError, match="20, one per class"):
        VOCDataset(str(voc), SIZE, MEAN, STD, class_indices=[0, 1])


def test_voc_missing_root(tmp_path):
    with pytest.raises(ConfigError, match="Annotations"):
        VOCDataset(str(tmp_path), SIZE, MEAN, STD)
    with pytest.raises(ConfigError, match="not a folder"):
        VOCDataset(str(tmp_path / "nope"), SIZE, MEAN, STD)


def test_coco_pairs_and_boxes(tmp_path):
    write_coco(tmp_path)
    ds = COCODataset(str(tmp_path), SIZE, MEAN, STD, year=2014)
    assert (
        ds.name == "coco14" and ds.num_classes == 3 and ds.class_names == ["person", "car", "dog"]
    )
    s = by_id(ds)
    assert list(s) == ["139:person", "139:dog", "285:car"]  # image 632 has no annotations: no pair
    person = s["139:person"]
    assert person.target == 0 and person.orig_size == (48, 64)
    assert person.boxes.tolist() == [[2.5, 3.0, 12.5, 23.0], [30.0, 10.0, 38.0, 18.0]]
    assert s["285:car"].target == 1 and s["285:car"].boxes.tolist() == [[0.0, 0.0, 50.0, 70.0]]
    assert person.difficult and not s["285:car"].difficult  # dog distracts; small boxes


def test_coco_missing_annotations(tmp_path):
    write_coco(tmp_path)
    with pytest.raises(ConfigError, match="instances_val2017.json"):
        COCODataset(str(tmp_path), SIZE, MEAN, STD, year=2017)


def test_imagenet_labels_and_boxes(tmp_path):
    val, boxes = write_imagenet(tmp_path)
    ds = ImageNetDataset(str(tmp_path), SIZE, MEAN, STD, boxes=str(boxes), resize="stretch")
    assert ds.fields == {"boxes"} and ds.class_names == ["n01440764", "n01443537"]
    s = by_id(ds)
    a = s["ILSVRC2012_val_00000001"]
    assert a.target == 0 and a.orig_size == (60, 80)
    assert a.boxes.tolist() == [[10.0, 5.0, 40.0, 45.0]]  # other wnids' boxes dropped
    assert len(s["ILSVRC2012_val_00000002"].boxes) == 2
    c = s["ILSVRC2012_val_00000003"]
    assert c.target == 1 and c.boxes.shape == (0, 4)  # no XML: no boxes
    plain = ImageNetDataset(str(val), SIZE, MEAN, STD)
    assert plain.fields == frozenset() and plain[0].boxes is None and len(plain) == 3


def test_imagenet_class_index_file(tmp_path):
    val, _ = write_imagenet(tmp_path)
    idx = tmp_path / "wnids.txt"
    idx.write_text("n00000001\nn01443537\nn01440764\n")
    ds = ImageNetDataset(str(val), SIZE, MEAN, STD, class_index=str(idx))
    assert ds.num_classes == 3 and [ds[i].target for i in range(3)] == [2, 2, 1]


def test_center_crop_moves_boxes_into_the_window(tmp_path):
    val, boxes = write_imagenet(tmp_path)
    ds = ImageNetDataset(
        str(val), [64, 64], MEAN, STD, boxes=str(boxes), resize="center_crop", resize_size=64
    )
    s = ds[1]  # 64x64 image, crop = whole image
    assert s.orig_size == (64, 64) and s.boxes.tolist() == [[0, 0, 21, 21], [30, 30, 64, 64]]
    a = ds[0]  # 80x60 -> window 60x60 starting at x=10
    assert a.orig_size == (60, 60)
    assert torch.allclose(a.boxes, torch.tensor([[0.0, 5.0, 30.0, 45.0]]))


def test_preprocess_normalises():
    from PIL import Image

    img = Image.new("RGB", (10, 6), (255, 0, 128))
    x, frame = Preprocess([4, 5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])(img)
    assert x.shape == (3, 4, 5) and frame.size == (6, 10)
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)


def test_folder_csv(tmp_path):
    root = write_folder(tmp_path)
    ds = FolderDataset(str(root), SIZE, MEAN, STD)
    assert ds.class_names == ["cat", "dog"] and ds.fields == {"boxes"}
    s = by_id(ds)
    assert (
        s["imgs/a"].boxes.tolist() == [[1, 2, 20, 30], [25, 5, 45, 35]] and s["imgs/a"].target == 0
    )
    assert s["imgs/b"].boxes.shape == (0, 4) and s["imgs/b"].orig_size == (40, 40)
    assert s["imgs/c"].target == 1


def test_folder_labels_only_and_errors(tmp_path):
    root = write_folder(tmp_path)
    (root / "plain.csv").write_text("image,label\nimgs/a.jpg,3\nimgs/a.jpg,1\n")
    ds = FolderDataset(str(root), SIZE, MEAN, STD, labels="plain.csv", num_classes=10)
    assert ds.fields == frozenset() and ds.num_classes == 10
    assert sorted(ds.sample_ids) == ["imgs/a:1", "imgs/a:3"]  # two labels: one pair each
    (root / "bad.csv").write_text("image,label\nimgs/zzz.jpg,1\n")
    with pytest.raises(ConfigError, match="zzz.jpg not found"):
        FolderDataset(str(root), SIZE, MEAN, STD, labels="bad.csv")
    (root / "bad2.csv").write_text("image,label,x0,y0,x1,y1\nimgs/a.jpg,1,5,5,2,9\n")
    with pytest.raises(ConfigError, match="empty"):
        FolderDataset(str(root), SIZE, MEAN, STD, labels="bad2.csv")


def test_shared_keys_defaults_and_calls(tmp_path):
    """The shared keys are FileDataset's (forwarded with ``**common``), each loader its defaults;
    root, input_size, mean and std positionally or by keyword, the config's accepted keys intact."""
    from bench.config.validate import _parameters

    shared = {"root", "input_size", "mean", "std", "resize", "resize_size", "name", "split"}
    pairs = {"year", "class_indices", "model_num_classes", "difficult_file"}
    own = {
        VOCDataset: pairs,
        COCODataset: pairs | {"annotations", "images"},
        ImageNetDataset: {"boxes", "class_index", "one_based"},
        FolderDataset: {"labels", "classes", "num_classes"},
    }
    for cls, keys in own.items():
        assert _parameters(cls) == (shared | keys | {"pointing_tolerance"}, False), cls
    voc, coco = write_voc(tmp_path / "voc"), write_coco(tmp_path / "coco", year=2017)
    val, _ = write_imagenet(tmp_path / "in")
    folder = write_folder(tmp_path / "f")
    cases = {
        ("voc07", "test", 15.0, "stretch"): VOCDataset(str(voc), SIZE, MEAN, STD),
        ("coco17", "val", 15.0, "stretch"): COCODataset(str(coco), SIZE, MEAN, STD, year=2017),
        ("imagenet", "val", 15.0, "center_crop"): ImageNetDataset(
            root=str(val), input_size=SIZE, mean=MEAN, std=STD
        ),
        ("folder", "", None, "stretch"): FolderDataset(str(folder), SIZE, MEAN, STD),
    }
    for expected, ds in cases.items():
        got = (ds.name, ds.split, ds.pointing_tolerance, ds.preprocess.resize)
        assert got == expected and ds.preprocess.size == (32, 48)
    assert COCODataset(str(coco), SIZE, MEAN, STD, year=2017, name=None).name == "coco17"
    with pytest.raises(ConfigError, match="dataset.resize=foo"):
        FolderDataset(str(folder), SIZE, MEAN, STD, resize="foo")
