"""What ``keep_freed_memory`` buys: a method and a metric with the allocator as glibc ships it vs tuned.

    python scripts/bench_allocator.py --images 4 --threads 1 [--method rise,lime] [--metric deletion]

Each case runs in a fresh subprocess (the allocator setting is process-wide and sticks): the
committed shapes CNN, ``--images`` test images of the embedded benchmark, the method's default
config, then the metric on the maps. Reports wall seconds, user and system CPU seconds and minor
page faults per phase, and writes ``results/reference/allocator_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

from bench import ROOT
from bench.engine.io import atomic_write_text
from bench.engine.provenance import machine

PROBE = r"""
import json, resource, sys, time, torch
from hydra.utils import instantiate
from bench.engine.allocator import keep_freed_memory
from bench.api import compose
from bench.core.context import Context
from bench.core.batch import collate
from bench.data.subset import SUBSET_KEYS

keep, method_name, metric_name, n, threads = sys.argv[1] == "1", sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
state = keep_freed_memory() if keep else "system"
cfg = compose(f"method={method_name}", f"metric=[{metric_name}]", resolve=False)
model = instantiate(cfg.model).eval()
node = {k: v for k, v in cfg.dataset.items() if k not in SUBSET_KEYS}
data = instantiate(node)
batch = collate([data[i] for i in range(n)])
method = instantiate(cfg.method)
metric = instantiate(cfg.metric[metric_name])
method(model, batch.images[:1], batch.targets[:1])  # warm-up: first-call costs out of the figures

def measure(fn):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = fn()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return out, {"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                 "faults": r1.ru_minflt - r0.ru_minflt}

maps, m_cost = measure(lambda: method(model, batch.images, batch.targets))
ctx = Context(model=model, method=method, seed=0)
_, s_cost = measure(lambda: metric(ctx, batch, maps))
print(json.dumps({"allocator": state, "method": m_cost, "metric": s_cost}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="rise,lime", help="comma-separated method configs")
    p.add_argument("--metric", default="deletion")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "results" / "reference" / "allocator_speed.md"))
    args = p.parse_args()
    import torch

    rows = []
    for method in args.method.split(","):
        for keep in (0, 1):
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    PROBE,
                    str(keep),
                    method,
                    args.metric,
                    str(args.images),
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            if out.returncode != 0:
                sys.exit(out.stderr[-3000:])
            rows.append(
                {
                    "name": method,
                    "kept": bool(keep),
                    **json.loads(out.stdout.strip().splitlines()[-1]),
                }
            )
    where = machine()
    load = "/".join(map(str, where["load_average"] or ["unknown"]))
    lines = [
        "# Allocator: glibc as shipped vs `keep_freed_memory`",
        "",
        f"`python scripts/bench_allocator.py --method {args.method} --metric {args.metric} "
        f"--images {args.images} --threads {args.threads}`",
        "",
        f"{where['cpu']} ({where['cores']} cores), {platform.platform()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), load average {load} at the end; the shapes CNN at 112 px; "
        f"{args.images} images, the method's and the metric's default configs; each case in a "
        "fresh process after one warm-up call.",
        "",
        "| allocator | phase | wall s | user CPU s | system CPU s | minor page faults |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for phase in ("method", "metric"):
            c = r[phase]
            name = r["name"] if phase == "method" else f"{args.metric} on {r['name']}'s maps"
            allocator = "kept (`keep_freed_memory`)" if r["kept"] else "glibc as shipped"
            lines.append(
                f"| {allocator} | {name} | {c['wall']:.2f} | {c['user']:.2f} | {c['sys']:.2f} "
                f"| {c['faults']:,} |"
            )
    lines += ["", f"Allocator state reported by the tuned process: {rows[-1]['allocator']}."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    main()
