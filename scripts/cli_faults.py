"""Run bad overrides and code-execution payloads through the real ``bench`` command line and
count how each ends: a one-line error, a multi-line Hydra block, a traceback, or accepted.

    python scripts/cli_faults.py --out results/reference/cli_faults.md
    python scripts/cli_faults.py --root /path/to/another/checkout --out before.md
    python scripts/cli_faults.py --generated 0 --only metric=4      # one case (a smoke test)

``--root`` runs another checkout's code (``PYTHONPATH=<root> python -m bench``) on the same
cases, so two commits are compared case by case. The cases are fixed: the payloads and faults of
issue 22, then bad overrides generated from the config's own keys (a misspelt key, a word where a
number or a boolean is expected, an unknown ``+key``), with a fixed seed. Every case here is
wrong, so ``accepted`` (exit 0) is a silent acceptance. A payload tries to create a marker file;
the table says whether it did.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pickle
import random
import re
import shutil
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ["dataset.limit=1", "batch_size=1"]
MARK = "{marker}"


@dataclass
class Case:
    name: str
    argv: list[str]
    payload: bool = False
    expect: str = "refused"  # or "runs": a control that must still work
    env: dict[str, str] = field(default_factory=dict)
    cwd_files: bool = False


class Touch:
    """Unpickling this calls ``open(path, "w")``: the marker file appears."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def prepare(work: Path, marker: Path) -> None:
    """The files the payloads point at: pickles that create ``marker``, a user's own model module,
    a module that creates it on import, a shared config folder with a callback."""
    for name in ("evil.pt", "evil.pkl", "evil.npy"):
        (work / name).write_bytes(pickle.dumps(Touch(str(marker))))
    pkg = work / "userpkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "net.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Net(nn.Module):
                def __init__(self, width: int = 4, **extra) -> None:
                    super().__init__()
                    self.conv = nn.Conv2d(3, width, 3, padding=1)
                    self.head = nn.Linear(width, 8)

                def forward(self, x):
                    return self.head(torch.relu(self.conv(x)).mean((2, 3)))
            """
        )
    )
    (work / "evilmod").mkdir(exist_ok=True)
    (work / "evilmod" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    shared = work / "shared_conf" / "team"
    shared.mkdir(parents=True, exist_ok=True)
    callback = f"{{_target_: hydra.utils.Path.touch, _args_: [{marker}]}}"
    (shared / "shared.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    evil: " + callback + "\n"
    )
    handler = f"{{'()': builtins.open, file: {marker}, mode: w}}"
    (shared / "logging.yaml").write_text(
        "# @package _global_\nhydra:\n  job_logging:\n    handlers:\n      evil: " + handler + "\n"
    )
    (work / "rerun.pickle").write_bytes(pickle.dumps(Touch(str(marker))))
    images = work / "images"
    images.mkdir(exist_ok=True)
    (images / "a.pt").write_bytes(pickle.dumps(Touch(str(marker))))
    (images / "labels.csv").write_text("image,label\na.pt,0\n")


def payloads() -> list[Case]:
    """The ways a config could run code or unpickle a file, each of which must be refused (and
    the control, which must run): targets, Hydra's own hooks, then data and opt-ins."""
    return _target_payloads() + _hydra_payloads() + _other_payloads()


def _custom() -> tuple[list[str], list[str]]:
    """The overrides of a custom model, and of the user's own module."""
    custom = [
        "model=custom",
        "model.mean=[0,0,0]",
        "model.std=[1,1,1]",
        "model.input_size=[112,112]",
    ]
    user = [*custom, "model.module=userpkg.net.Net"]
    return custom, user


def _target_payloads() -> list[Case]:
    """Callables named where a config takes a module or a ``_target_``."""
    custom, user = _custom()
    return [
        Case(
            "torch.load as model.module",
            [*custom, "model.module=torch.load", "model.args={f: evil.pt, weights_only: false}"],
            True,
        ),
        Case(
            "pandas.read_pickle as model.module",
            [
                *custom,
                "model.module=pandas.read_pickle",
                "model.args={filepath_or_buffer: evil.pkl}",
            ],
            True,
        ),
        Case(
            "numpy.load as model.module",
            [*custom, "model.module=numpy.load", "model.args={file: evil.npy, allow_pickle: true}"],
            True,
        ),
        Case(
            "method target through bench.results.collate.pd",
            [
                "method=random",
                "~method.seed",
                "method._target_=bench.results.collate.pd.read_pickle",
                "+method.filepath_or_buffer=evil.pkl",
            ],
            True,
        ),
        Case(
            "method target through bench.engine.run.torch",
            [
                "method=random",
                "~method.seed",
                "method._target_=bench.engine.run.torch.load",
                "+method.f=evil.pt",
                "+method.weights_only=false",
            ],
            True,
        ),
        Case(
            "target nested in model.args",
            [
                *user,
                "trust_code=true",
                f"model.args={{width: 4, x: {{_target_: pathlib.Path.touch, _args_: [{MARK}]}}}}",
            ],
            True,
        ),
    ]


def _hydra_payloads() -> list[Case]:
    """Hydra's callbacks, search paths, logging config and rerun file."""
    cb = f"{{_target_: hydra.utils.Path.touch, _args_: [{MARK}]}}"
    return [
        Case("hydra callback Path.touch", [f"+hydra.callbacks.evil={cb}"], True),
        Case(
            "hydra callback that unpickles",
            [
                "+hydra.callbacks.evil={_target_: bench.engine.run.torch.load, "
                "f: evil.pt, weights_only: false}"
            ],
            True,
        ),
        Case(
            "callback from --config-dir YAML",
            ["--config-dir", "shared_conf", "+team=shared"],
            True,
        ),
        Case(
            "callback from hydra.searchpath YAML",
            ["hydra.searchpath=[file://shared_conf]", "+team=shared"],
            True,
        ),
        Case(
            "logging factory under hydra.job_logging",
            ["--config-dir", "shared_conf", "+team=logging"],
            True,
        ),
        Case("pkg:// search path imports a module", ["hydra.searchpath=[pkg://evilmod]"], True),
        Case("--experimental-rerun unpickles", ["--experimental-rerun", "rerun.pickle"], True),
    ]


def _other_payloads() -> list[Case]:
    """A pickled image, an environment variable, and the user's own code with and without the
    opt-in."""
    custom, user = _custom()
    return [
        Case(
            "pickle payload as a .pt image",
            [
                "dataset=folder",
                "dataset.root=images",
                "dataset.num_classes=8",
            ],
            True,
        ),
        Case("env_set LD_PRELOAD", ["+hydra.job.env_set.LD_PRELOAD=/nonexistent/evil.so"], True),
        Case("own module without the opt-in", [*user], True),
        Case(
            "torch.load as model.module, with the opt-in",
            [
                *custom,
                "trust_code=true",
                "model.module=torch.load",
                "model.args={f: evil.pt, weights_only: false}",
            ],
            True,
        ),
        Case("control: own module with the opt-in", [*user, "trust_code=true"], True, "runs"),
    ]


def faults() -> list[Case]:
    """The faults of issue 22 that ended in a traceback or said nothing."""
    return [
        Case("metric=null", ["metric=null"]),
        Case("metric=4", ["metric=4"]),
        Case("hydra.run.dir=/proc/forbidden", ["hydra.run.dir=/proc/forbidden"]),
        Case("+experiment=nosuch", ["+experiment=nosuch"]),
        Case("subset=nosuch", ["subset=nosuch"]),
        Case("hydra/launcher=nosuch", ["hydra/launcher=nosuch"]),
        Case("metric.deletion.step=100000", ["metric.deletion.step=100000"]),
        Case("metric.insertion.blur_size=1001", ["metric.insertion.blur_size=1001"]),
        Case("metric.deletion.stpe=3 (nested typo)", ["metric.deletion.stpe=3"]),
        Case("method.n_step=3 (nested typo)", ["method=integrated_gradients", "method.n_step=3"]),
        Case(
            "empty shards (runs: the summary of shards 0-1, two EMPTY lines)",
            [
                "-m",
                "method=random",
                "dataset.limit=2",
                "dataset.num_shards=4",
                "dataset.shard=0,1,2,3",
            ],
            expect="runs",
        ),
    ]


def leaf_items(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaf_items(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


FREE_TEXT = ("name", "tag", "root", "dir", "file", "labels", "path", "module", "checkpoint", "arch")


def generated(seed: int = 0, count: int = 160) -> list[Case]:
    """Bad overrides from the config's keys: misspelt keys, words for numbers and booleans."""
    sys.path.insert(0, str(ROOT))
    from omegaconf import OmegaConf

    from bench.api import compose

    rng = random.Random(seed)
    contexts = [
        [],
        ["method=integrated_gradients"],
        ["method=smoothgrad"],
        ["method=rise"],
        ["method=occlusion"],
        ["metric=[road_abc]"],
        ["metric=[max_sensitivity]"],
    ]
    pool: list[tuple[list[str], str, object]] = []
    for ctx in contexts:
        cfg = OmegaConf.to_container(compose(*ctx, resolve=False), resolve=False)
        for key, value in leaf_items(cfg):
            if "_target_" in key or key.startswith(("paths", "logger", "trust_code")):
                continue
            pool.append((ctx, key, value))
    cases: list[Case] = []
    seen: set[str] = set()
    while len(cases) < count:
        ctx, key, value = rng.choice(pool)
        kind = rng.choice(["typo", "word", "plus"])
        if kind == "typo":
            i = rng.randrange(len(key))
            bad = key[:i] + rng.choice(string.ascii_lowercase) + key[i + 1 :]
            if bad == key or bad in {k for _, k, _ in pool}:
                continue
            arg = f"{bad}=1"
        elif kind == "word":
            last = key.rsplit(".", 1)[-1]
            if isinstance(value, bool):
                arg = f"{key}=maybe"
            elif isinstance(value, (int, float)) and not any(t in last for t in FREE_TEXT):
                arg = f"{key}=lots"
            else:
                continue
        else:
            arg = f"+{key.rsplit('.', 1)[0] + '.' if '.' in key else ''}zz{rng.randrange(100)}=1"
        if arg in seen:
            continue
        seen.add(arg)
        cases.append(Case(f"generated: {' '.join(ctx + [arg])}", [*ctx, arg]))
    return cases


def _keys(argv: list[str]) -> list[str]:
    """The keys (and their last parts) an override list names."""
    out = []
    for a in argv:
        if "=" in a and not a.startswith("-"):
            key = a.split("=", 1)[0].lstrip("+~")
            out += [key, key.rsplit(".", 1)[-1], key.split("/")[-1]]
    return out


def classify(code: int, err: str, argv: list[str]) -> str:
    """``accepted`` (exit 0), ``traceback``, ``one line`` (one ``error:`` line naming a key of
    the case), ``one line, cut`` (ends with a colon: a list that was left out), ``one line,
    names no key``, ``hydra block`` (several lines), ``silent failure`` (no message)."""
    lines = [ln for ln in err.splitlines() if ln.strip() and "Warning" not in ln]
    lines = [ln for ln in lines if not ln.startswith(("  warnings.warn", "  warn("))]
    lines = [ln for ln in lines if not re.match(r"^\S+ on \S+: +\d+%", ln)]  # progress bars
    if code == 0:
        return "accepted"
    if "Traceback" in err:
        return "traceback"
    if len(lines) == 1 and lines[0].startswith(("error:", "interrupted")):
        if lines[0].rstrip().endswith(":"):
            return "one line, cut"
        keys = _keys(argv)
        if keys and not any(k and k in lines[0] for k in keys):
            return "one line, names no key"
        return "one line"
    return "hydra block" if lines else "silent failure"


def run_case(case: Case, root: Path, timeout: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-fault-"))
    marker = work / "MARKER"
    try:
        prepare(work, marker)
        argv = [a.replace(MARK, str(marker)) for a in case.argv]
        if "trust_code" not in (root / "conf" / "config.yaml").read_text():
            argv = [a for a in argv if not a.startswith("trust_code")]  # an older checkout
        sweep = "-m" in argv
        named = {a.lstrip("+~").split("=", 1)[0] for a in argv}
        extra = [j for j in JOB if j.split("=", 1)[0] not in named]
        paths = [f"paths.output_root={work / 'out'}", f"paths.cache_root={work / 'cache'}"]
        if not any(a.startswith("--experimental") for a in argv):
            argv = [*argv, *extra, *paths]
            if not sweep and not any(a.startswith("hydra.run.dir") for a in argv):
                argv.append(f"hydra.run.dir={work / 'run'}")
        env = {
            **os.environ,
            "PYTHONPATH": f"{root}{os.pathsep}{work}",
            "HYDRA_FULL_ERROR": "0",
            "OMP_NUM_THREADS": "1",
            "BENCH_CACHE": "off",
            **case.env,
        }
        start = time.time()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench", *argv],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            code, err = done.returncode, done.stderr
        except subprocess.TimeoutExpired:
            code, err = -1, "timeout"
        outcome = classify(code, err, case.argv) if code != -1 else "timeout"
        if case.expect == "runs" and not case.payload:
            outcome = (
                "runs, as expected" if outcome == "accepted" else f"{outcome} (expected a run)"
            )
        shown = [ln for ln in err.splitlines() if ln.strip() and "Warning" not in ln]
        first = next(iter(shown), "")
        return {
            "case": case.name,
            "payload": case.payload,
            "expect": case.expect,
            "outcome": outcome,
            "code": code,
            "marker": marker.exists(),
            "first": first[:160],
            "seconds": round(time.time() - start, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose code runs")
    parser.add_argument("--out", type=Path, help="write the Markdown tables here")
    parser.add_argument("--generated", type=int, default=160, help="generated bad overrides")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument(
        "--only", default="", help="comma-separated case names to run (default: every case)"
    )
    args = parser.parse_args(argv)
    cases = payloads() + faults() + generated(count=args.generated)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            parser.error(f"--only {','.join(sorted(unknown))}: no such case")
        cases = [c for c in cases if c.name in wanted]
    root = args.root.resolve()
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda c: run_case(c, root, args.timeout), cases))
    lines = [
        f"# Command-line faults and payloads ({root.name}, {time.strftime('%Y-%m-%d')})",
        "",
        f"`python scripts/cli_faults.py --root {root}`: each case run as `python -m bench <argv> "
        f"{' '.join(JOB)}` in a fresh folder.",
        "",
        "## Payloads (each tries to create a marker file)",
        "",
        "| payload | expected | outcome | exit | marker created | first line of stderr |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["payload"]:
            first = r["first"].replace("|", "\\|")
            lines.append(
                f"| {r['case']} | {r['expect']} | {r['outcome']} | {r['code']} | "
                f"{'**yes**' if r['marker'] else 'no'} | {first} |"
            )
    bad = [r for r in results if not r["payload"]]
    counts: dict[str, int] = {}
    for r in bad:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    lines += [
        "",
        f"## Bad overrides ({len(bad)}: {len(faults())} from issue 22, the rest generated)",
        "",
    ]
    lines += ["| outcome | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    lines += ["", "| case | outcome | exit | first line of stderr |", "|---|---|---|---|"]
    for r in bad:
        first = r["first"].replace("|", "\\|")
        lines.append(f"| `{r['case']}` | {r['outcome']} | {r['code']} | {first} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
