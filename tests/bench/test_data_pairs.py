"""Multi-label pairs (bench/data/pairs.py): the "difficult" subset from TorchRay's flag file or the paper's rule."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.data.pairs import is_difficult_pair, read_pair_flags, union_area
from bench.data.voc import VOC_CLASSES, VOCDataset
from tests.bench._fixtures import MEAN, STD, write_voc
from tests.metrics._loc_helpers import ref_box_mask

#: The first four lines of TorchRay's ``torchray/benchmark/pointing_game_ebp_voc07_difficult.txt``,
#: byte for byte: the image id, then one tab-separated 0/1 flag per VOC class in VOC order.
TORCHRAY_LINES = (
    "000001\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t1\t0\t0\t0\t0\t0\t0\t0\t0\n"
    "000002\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\n"
    "000003\t0\t0\t0\t0\t0\t0\t0\t0\t1\t0\t0\t0\t0\t0\t0\t0\t0\t1\t0\t0\n"
    "000004\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\n"
)


def test_torchrays_flag_file_is_read_per_class(tmp_path):
    path = tmp_path / "pointing_game_ebp_voc07_difficult.txt"
    path.write_text(TORCHRAY_LINES)
    # flag 11 of 000001 is the dog (VOC07 test 000001: a dog and a person); 000003: chair and sofa
    assert read_pair_flags(path, VOC_CLASSES) == {"000001:dog", "000003:chair", "000003:sofa"}


def test_voc_marks_the_pairs_torchrays_file_flags(tmp_path):
    voc = write_voc(tmp_path)
    path = tmp_path / "difficult.txt"
    path.write_text(TORCHRAY_LINES)
    ds = VOCDataset(str(voc), (32, 48), MEAN, STD, difficult_file=str(path))
    flagged = {ds[i].id: ds[i].difficult for i in range(len(ds))}
    # the file, not the paper's rule (which would mark 000003:car, a small box with a distractor)
    assert flagged == {
        "000001:dog": True,
        "000001:person": False,
        "000002:cat": False,
        "000003:car": False,
    }


def test_pair_lines_and_bad_lines(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("000001 dog\n000002:cat\n")
    assert read_pair_flags(path, VOC_CLASSES) == {"000001:dog", "000002:cat"}
    path.write_text("000001\t0\t1\t0\n")  # 3 flags for 20 classes
    with pytest.raises(ConfigError, match="line 1 has 3 flags.*20"):
        read_pair_flags(path, VOC_CLASSES)
    path.write_text("000001:dgo\n")
    with pytest.raises(ConfigError, match="line 1 names class 'dgo'"):
        read_pair_flags(path, VOC_CLASSES)
    with pytest.raises(ConfigError, match="not found"):
        read_pair_flags(tmp_path / "missing.txt", VOC_CLASSES)


def test_union_area_is_exact_for_overlapping_and_clipped_boxes():
    boxes = np.array([[0, 0, 4, 4], [2, 2, 6, 6], [5.5, 0, 12, 1]], dtype=np.float32)
    assert union_area(boxes, 10, 10) == pytest.approx(16 + 16 - 4 + 4.5)  # the third is clipped
    assert union_area(boxes, 10, 10) == pytest.approx(
        ref_box_mask(boxes[:2].tolist(), 10, 10).sum() + 4.5
    )
    assert union_area(np.zeros((0, 4)), 10, 10) == 0.0


def test_difficult_pairs_follow_the_papers_definition():
    # VOC07 test image 000001 (353 x 500): a dog box of 147 x 131 px and a person box covering most
    # of the image; TorchRay's flag file marks (000001, dog) difficult and (000001, person) not.
    present = {"dog", "person"}
    assert is_difficult_pair(np.array([[47.0, 239, 195, 371]]), present, 500, 353)
    assert not is_difficult_pair(np.array([[7.0, 11, 352, 500]]), present, 500, 353)
    # no distractor: never difficult, however small
    assert not is_difficult_pair(np.array([[0.0, 0, 2, 2]]), {"cat"}, 100, 100)
    # the threshold is strict and uses the union: 2 boxes of 25 x 50 overlapping by half
    two = np.array([[0.0, 0, 25, 50], [0, 25, 25, 75]])
    assert is_difficult_pair(two, {"a", "b"}, 100, 100)
    assert not is_difficult_pair(np.array([[0.0, 0, 50, 50]]), {"a", "b"}, 100, 100)  # exactly 1/4
