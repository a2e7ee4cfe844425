"""Bad inputs of a file-backed dataset are one line naming the file (and the CSV line), before
any compute: the labels CSV (encoding, rows, labels, ids, paths outside the root) and the image
files (``check_files``, ``dataset.on_bad_sample`` fail or skip)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from bench.api import compose
from bench.config.validate import validate
from bench.core.errors import ConfigError
from bench.data.files import check_file
from bench.data.folder import FolderDataset
from bench.data.subset import select
from tests.bench._fixtures import MEAN, STD, jpeg

SIZE = [16, 16]


def png(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)).save(path)


def folder(root, csv="image,label\na.jpg,0\nb.png,1\nc.jpg,0\nd.png,1\n"):
    """Four images (two JPEG, two PNG) and a labels CSV."""
    root.mkdir(parents=True, exist_ok=True)
    jpeg(root / "a.jpg", 20, 16, seed=1)
    png(root / "b.png", 18, 12, seed=2)
    jpeg(root / "c.jpg", 24, 20, seed=3)
    png(root / "d.png", 10, 14, seed=4)
    (root / "labels.csv").write_text(csv)
    return root


def load(root, **kw):
    return FolderDataset(str(root), SIZE, MEAN, STD, **kw)


def error(fn, *args, **kw) -> str:
    """The one-line message of the ConfigError ``fn`` raises."""
    with pytest.raises(ConfigError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# -- the labels CSV --------------------------------------------------------------------------


def test_a_csv_with_a_byte_order_mark_gives_the_same_samples(tmp_path):
    root = folder(tmp_path)
    plain = load(root)
    text = "image,label,id\na.jpg,0,first\nb.png,1,\n"
    (root / "labels.csv").write_text(text)
    (root / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    plain, bom = load(root), load(root, labels="bom.csv")
    assert bom.sample_ids == plain.sample_ids == ["first", "b"]
    assert [r["target"] for r in bom.records] == [r["target"] for r in plain.records]


def test_a_csv_that_is_not_utf8_names_the_line_and_byte(tmp_path):
    root = folder(tmp_path)
    (root / "labels.csv").write_bytes("image,label\na.jpg,0\nb.png,café\n".encode("latin-1"))
    msg = error(load, root)
    assert f"{root / 'labels.csv'}:3: byte 29 (0xe9) is not UTF-8" in msg
    assert "accepted: a UTF-8 CSV" in msg
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbfimage,label\n\xff.jpg,0\n")  # after a BOM
    assert "labels.csv:2: byte 15 (0xff)" in error(load, root)


def test_a_csv_with_a_header_but_no_rows(tmp_path):
    root = folder(tmp_path, csv="image,label\n")
    msg = error(load, root)
    assert msg.startswith(f"{root / 'labels.csv'} has a header but no rows; accepted:")
    (root / "labels.csv").write_text("")
    assert error(load, root).startswith(f"{root / 'labels.csv'} is empty; accepted:")


def test_an_empty_label_names_the_line(tmp_path):
    root = folder(tmp_path, csv="image,label\na.jpg,0\nb.png,\nc.jpg,1\n")
    msg = error(load, root)
    assert msg.startswith(f"{root / 'labels.csv'}:3: the label is empty; accepted: a class name")
    msg = error(load, root, classes=["cat", "dog"])
    assert ":3: the label is empty; accepted: a class name (cat, dog...)" in msg


@pytest.mark.parametrize(
    "csv,lines,sid",
    [
        ("image,label\nb.png,0\na.png,1\na.jpg,0\n", (3, 4), "a"),  # a.png and a.jpg: id a
        ("image,label,id\na.jpg,0,x\nb.png,1,y\nc.jpg,0,x\n", (2, 4), "x"),  # explicit id repeats
    ],
)
def test_duplicate_sample_ids_name_both_lines(tmp_path, csv, lines, sid):
    root = folder(tmp_path, csv=csv)
    png(root / "a.png", 8, 8)
    msg = error(load, root)
    assert msg.startswith(f"{root / 'labels.csv'}:{lines[0]} and line {lines[1]}: images ")
    assert f"both have the sample id {sid}; accepted: one id per image" in msg


def test_one_image_with_two_labels_is_not_a_duplicate(tmp_path):
    root = folder(tmp_path, csv="image,label\na.jpg,0\na.jpg,1\na.jpg,1\n")
    assert load(root).sample_ids == ["a:0", "a:1"]


@pytest.mark.parametrize("column", ["image", "mask"])
@pytest.mark.parametrize("where", ["../outside.png", "sub/../../outside.png", "absolute"])
def test_paths_outside_the_root_are_refused(tmp_path, column, where):
    root = folder(tmp_path / "data")
    png(tmp_path / "outside.png", 20, 16)
    path = str(tmp_path / "outside.png") if where == "absolute" else where
    row = f"{path},0,a.jpg" if column == "image" else f"a.jpg,0,{path}"
    (root / "labels.csv").write_text(f"image,label,mask\n{row}\n")
    msg = error(load, root)
    assert msg == (
        f"{root / 'labels.csv'}:2: {column} {path} is outside the dataset's folder; "
        f"accepted: a path inside dataset.root={root}."
    )


def test_paths_inside_the_root_and_symlinks_in_it_are_accepted(tmp_path):
    root = folder(tmp_path / "data")
    (root / "sub").mkdir()
    png(tmp_path / "elsewhere.png", 8, 8)
    try:
        os.symlink(tmp_path / "elsewhere.png", root / "sub" / "link.png")
    except OSError:
        pytest.skip("no symlinks here")
    rows = ["image,label", "sub/../a.jpg,0", f"{root / 'b.png'},0", "sub/link.png,1"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load(root)
    assert len(ds) == 3 and ds.check_files(range(3)) == []


# -- the image files -------------------------------------------------------------------------


def test_good_files_pass_and_each_kind_of_bad_file_gives_a_reason(tmp_path):
    root = folder(tmp_path)
    ds = load(root)
    assert ds.check_files(range(4)) == []
    assert check_file(root / "a.jpg") == (16, 20) and check_file(root / "d.png") == (14, 10)
    cases = {
        "cutj.jpg": lambda p: (jpeg(p, 20, 16), truncate(p)),
        "cutp.png": lambda p: (png(p, 20, 16), truncate(p)),
        "noend.jpg": lambda p: (jpeg(p, 20, 16), p.write_bytes(p.read_bytes()[:-2])),
        "empty.png": lambda p: p.write_bytes(b""),
        "text.png": lambda p: p.write_text("not an image"),
        "shape.npy": lambda p: np.save(p, np.zeros((4, 5), dtype=np.float32)),
        "range.npy": lambda p: np.save(p, np.full((4, 5, 3), 3.0, dtype=np.float32)),
        "cuta.npy": lambda p: (
            np.save(p, np.zeros((40, 50, 3), dtype=np.float32)),
            truncate(p, 0.3),
        ),
        "cutt.pt": lambda p: (torch.save(torch.zeros(3, 40, 50), p), truncate(p, 0.3)),
    }
    expect = {
        "cutj.jpg": "cannot read the image header",  # cut inside the header
        "cutp.png": "a truncated or corrupt PNG (it does not end with the PNG end marker",
        "noend.jpg": "a truncated or corrupt JPEG (it does not end with the JPEG end marker",
        "empty.png": "the image file is empty (0 bytes)",
        "text.png": "cannot read the image header (UnidentifiedImageError",
        "shape.npy": "an array of shape [4, 5]; accepted: [H, W, 3] or [3, H, W]",
        "range.npy": "pixel values in [3, 3]; accepted: finite values in [0, 1]",
        "cuta.npy": "cannot read the image array (ValueError",
        "cutt.pt": "cannot read the image array",
    }
    rows = ["image,label"]
    for name, make in cases.items():
        make(root / name)
        rows.append(f"{name},0")
    (root / "bad.csv").write_text("\n".join(rows) + "\n")
    bad = dict(load(root, labels="bad.csv").check_files(range(len(cases))))
    assert sorted(bad) == list(range(len(cases)))
    for i, name in enumerate(cases):
        assert bad[i].startswith(expect[name]) or expect[name] in bad[i], (name, bad[i])
        assert "\n" not in bad[i]


def test_the_cut_in_a_big_jpeg_is_found_by_its_missing_end(tmp_path):
    root = folder(tmp_path)
    jpeg(root / "a.jpg", 120, 100, seed=5)
    truncate(root / "a.jpg", 0.7)  # header intact, scan cut
    (reason,) = [r for _, r in load(root).check_files(range(4))]
    assert reason.startswith("a truncated or corrupt JPEG") and "truncated" in reason


def test_padding_or_trailing_data_after_the_end_marker_is_fine(tmp_path):
    root = folder(tmp_path)
    (root / "a.jpg").write_bytes((root / "a.jpg").read_bytes() + b"\x00\x00\n")
    (root / "b.png").write_bytes((root / "b.png").read_bytes() + b"\x00" * 10)
    (root / "c.jpg").write_bytes((root / "c.jpg").read_bytes() + b"camera trailer " * 20)
    assert load(root).check_files(range(4)) == []


def test_masks_are_checked_and_must_match_the_image(tmp_path):
    root = folder(tmp_path)
    Image.fromarray(np.zeros((16, 20), dtype=np.uint8)).save(root / "a_mask.png")
    np.save(root / "b_mask.npy", np.zeros((12, 18), dtype=bool))
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(root / "c_mask.png")
    noise = np.random.default_rng(0).integers(0, 2, size=(14, 10), dtype=np.uint8) * 255
    Image.fromarray(noise).save(root / "d_mask.png")
    truncate(root / "d_mask.png", 0.7)
    (root / "labels.csv").write_text(
        "image,label,mask\na.jpg,0,a_mask.png\nb.png,1,b_mask.npy\nc.jpg,0,c_mask.png\n"
        "d.png,1,d_mask.png\n"
    )
    bad = dict(load(root).check_files(range(4)))
    assert sorted(bad) == [2, 3]
    assert bad[2] == (
        f"its mask {root / 'c_mask.png'} is 5x5 px for an image of 20x24 px; accepted: a mask "
        "of the image's size"
    )
    assert bad[3].startswith(f"its mask {root / 'd_mask.png'}: a truncated or corrupt PNG")


def test_a_corrupt_middle_passes_the_check_but_fails_with_one_line_when_read(tmp_path):
    root = folder(tmp_path)
    jpeg(root / "a.jpg", 64, 48, seed=6)
    data = bytearray((root / "a.jpg").read_bytes())
    mid = data.find(b"\xff\xda") + (len(data) - data.find(b"\xff\xda")) // 2
    data[mid : mid + 2] = b"\xff\xc0"  # a frame marker inside the scan; the end is intact
    (root / "a.jpg").write_bytes(bytes(data))
    ds = load(root)
    assert ds.check_files(range(4)) == []
    msg = error(ds.__getitem__, 0)
    assert msg.startswith(f"{root / 'a.jpg'}: cannot read the image (OSError:")


# -- dataset.on_bad_sample -------------------------------------------------------------------


def test_skip_drops_the_bad_files_and_lists_them(tmp_path):
    root = folder(tmp_path)
    truncate(root / "a.jpg", 0.8)
    truncate(root / "d.png", 0.8)
    ds = load(root)
    sel = select(ds, on_bad_sample="skip")
    assert [sel[i].id for i in range(len(sel))] == ["b", "c"] and len(sel) == 2
    assert [(s["id"], s["path"]) for s in sel.skipped] == [
        ("a", str(root / "a.jpg")),
        ("d", str(root / "d.png")),
    ]
    assert sel.skipped[0]["reason"].startswith("a truncated or corrupt JPEG")
    assert sel.skipped[1]["reason"].startswith("a truncated or corrupt PNG")
    # only the selected items are checked: the first two, then the shard of them
    assert [s["id"] for s in select(ds, limit=2, on_bad_sample="skip").skipped] == ["a"]
    assert select(ds, limit=3, shard=1, num_shards=2, on_bad_sample="skip").skipped == []
    assert select(ds, ids=["b", "c"]).skipped == []  # fail, but nothing bad is selected


def test_fail_names_the_first_bad_file_and_how_to_skip(tmp_path):
    root = folder(tmp_path)
    truncate(root / "c.jpg", 0.8)
    truncate(root / "d.png", 0.8)
    ds = load(root)
    for kw in ({}, {"on_bad_sample": "fail"}):
        msg = error(select, ds, **kw)
        assert msg.startswith(f"{root / 'c.jpg'}: a truncated or corrupt JPEG")
        assert msg.endswith(
            "(1 more bad of the 4 selected); set dataset.on_bad_sample=skip to score the other "
            "images."
        )


def test_skip_of_every_selected_item_is_an_error(tmp_path):
    root = folder(tmp_path)
    truncate(root / "a.jpg", 0.8)
    msg = error(select, load(root), limit=1, on_bad_sample="skip")
    assert msg.startswith("dataset.on_bad_sample=skip skipped all 1 selected items")
    assert str(root / "a.jpg") in msg


def test_on_bad_sample_values(tmp_path):
    root = folder(tmp_path)
    msg = error(select, load(root), on_bad_sample="maybe")
    assert msg == "dataset.on_bad_sample=maybe is not valid; accepted: fail, skip."
    cfg = job_config(root, "dataset.on_bad_sample=maybe")
    assert error(validate, cfg, construct=False) == msg
    cfg = job_config(root)
    assert cfg.dataset.on_bad_sample == "fail"
    validate(cfg, construct=False)


def job_config(root, *overrides):
    return compose(
        "model=custom",
        "trust_code=true",
        "model.module=tests.conftest.TinyCNN",
        "model.args={num_classes: 2}",
        f"model.input_size={SIZE}",
        f"model.mean={MEAN}",
        f"model.std={STD}",
        "dataset=folder",
        f"dataset.root={root}",
        "method=gradcam",
        "metric=[deletion]",
        *overrides,
        resolve=False,
    )


@pytest.mark.parametrize("name", ["imagenet", "voc07", "coco17"])
def test_every_file_backed_dataset_has_the_key(name):
    assert compose(f"dataset={name}", resolve=False).dataset.on_bad_sample == "fail"


def test_a_job_on_a_truncated_image_stops_before_any_row(tmp_path):
    from bench.engine.run import run  # imported here: the runner is the heavier import

    root = folder(tmp_path / "data")
    truncate(root / "b.png", 0.8)
    out = tmp_path / "job"
    cfg = job_config(root, "dataset.on_bad_sample=fail")
    with pytest.raises(ConfigError) as info:
        run(cfg, out)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{root / 'b.png'}: a truncated or corrupt PNG")
    assert msg.endswith("set dataset.on_bad_sample=skip to score the other images.")
    assert not (out / "scores.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith("scores")]


def test_check_files_passes_every_good_file(tmp_path):
    """200 small JPEG and PNG images, all good (its cost, headers and tails only, is pinned by
    the next test: no pixel is decoded)."""
    root = tmp_path
    rows = ["image,label"]
    for i in range(100):
        jpeg(root / f"j{i}.jpg", 32, 32, seed=i)
        png(root / f"p{i}.png", 32, 32, seed=i)
        rows += [f"j{i}.jpg,0", f"p{i}.png,1"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load(root)
    assert ds.check_files(range(len(ds))) == []


def test_check_file_reads_no_pixels(tmp_path, monkeypatch):
    root = folder(tmp_path)
    calls = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(self))
    assert load(root).check_files(range(4)) == [] and calls == []


def test_skipped_images_are_in_the_record_and_the_collated_report(tmp_path):
    from bench.engine.run import run
    from bench.results.collate import collate

    root = folder(tmp_path / "data")
    truncate(root / "b.png", 0.8)
    out = tmp_path / "job"
    record = run(job_config(root, "dataset.on_bad_sample=skip"), out)
    assert record["status"] == "completed" and record["dataset"]["selected"] == 3
    (skipped,) = record["dataset"]["skipped"]
    assert skipped["path"] == str(root / "b.png") and "truncated" in skipped["reason"]
    (line,) = collate([out]).report()
    assert line.startswith(f"SKIPPED {out}: 1 unreadable image(s) not scored") and "b.png" in line
