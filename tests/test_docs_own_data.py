"""The own-model page's commands (docs/own-model.md, "Run"), run exactly as written on a folder
made here: a user's own module and checkpoint, a torchvision model with its own head, images with
boxes and masks (one image a float array)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from bench import ROOT

MY_NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    """Somebody's own 4-block CNN."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        layers, c = [], 3
        for i in range(4):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if i < 3 else []
            c = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))
'''


def page_commands() -> list[str]:
    """The ``bench`` commands of docs/own-model.md's "Run" section, continuation lines joined."""
    text = (ROOT / "docs" / "own-model.md").read_text()
    section = text.split("## 4. Run", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.startswith("bench ")]


def make_folder(data: Path, code: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["image,label,x0,y0,x1,y1,mask"]
    for i, (w, h) in enumerate([(80, 60), (64, 64), (50, 90)]):
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[h // 4 : h // 2, w // 4 : w // 2] = 255
        Image.fromarray(mask).save(data / f"m{i}.png")
        box = f"{w // 4},{h // 4},{w // 2},{h // 2}"
        if i == 2:  # a float image, never quantised
            np.save(data / f"img{i}.npy", rng.random((h, w, 3), dtype=np.float32))
            rows.append(f"img{i}.npy,{i},{box},m{i}.png")
        else:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                data / f"img{i}.jpg"
            )
            rows.append(f"img{i}.jpg,{i},{box},m{i}.png")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    (code / "my_nets.py").write_text(MY_NETS)
    sys.path.insert(0, str(code))
    try:
        from my_nets import Net

        torch.manual_seed(0)
        torch.save(Net(num_classes=3).state_dict(), data / "net.pt")
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("my_nets", None)
    torch.save(
        torchvision.models.resnet18(num_classes=3).state_dict(), data / "resnet18_3_classes.pt"
    )


def test_the_page_lists_both_commands():
    commands = page_commands()
    assert len(commands) == 2 and all("dataset=folder" in c for c in commands)


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1], ids=["own_module", "torchvision_own_head"])
def test_own_data_command_runs_as_written(index, tmp_path):
    data, code, work = tmp_path / "data", tmp_path / "code", tmp_path / "work"
    for d in (data, code, work):
        d.mkdir()
    make_folder(data, code)
    command = page_commands()[index]
    argv = [sys.executable, "-m", "bench", *shlex.split(command)[1:]]
    env = {**os.environ, "DATA": str(data), "PYTHONPATH": f"{code}{os.pathsep}{ROOT}"}
    argv = [os.path.expandvars(a.replace("$DATA", str(data))) for a in argv]
    res = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (job,) = [p.parent for p in work.rglob("scores.csv")]
    rows = pd.read_csv(job / "scores.csv")
    assert set(rows["metric"]) == {"deletion", "pointing_game", "relevance_mass_accuracy"}
    assert len(rows) == 3 * 3
    # random weights can give an all-zero Grad-CAM map: its rows are flagged constant_map (left
    # out of the means); any other NaN score says why
    flagged = rows["flag"].isin(["degenerate", "no_region", "constant_map"])
    assert (rows["value"].notna() | flagged).all()
    assert rows.loc[rows["metric"] == "relevance_mass_accuracy", "value"].notna().any()
