"""Draw attribution maps for looking, not scoring.

For one model (a ``conf/model`` name) and the first few images of a dataset (a ``conf/dataset``
name), writes into ``--out``:

- ``maps.png``: every method's map (every ``conf/method/*.yaml`` that applies, or ``--methods``)
  over each image;
- ``features.png``: the feature maps of ``--layer`` (default: the model's ``cam_layer``) for the
  first image;
- ``actmax_<class>.png``: an activation-maximisation image per ``--classes`` entry (gradient ascent
  on the class logit from noise, with L2 and total-variation penalties; Erhan et al. 2009,
  Simonyan et al. 2014).

Example: ``python scripts/visualise.py --model shapes_cnn --dataset shapes --n-images 4``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench import ROOT
from bench.api import compose
from bench.config.overrides import options
from bench.core.batch import collate
from bench.core.errors import ConfigError
from bench.core.layers import get_layer
from bench.models import meta_of

log = logging.getLogger("visualise")


def compose_run(model: str, dataset: str, method: str = "gradcam", extra: list[str] | None = None):
    return compose(
        f"model={model}", f"dataset={dataset}", f"method={method}", *(extra or []), resolve=False
    )


def to_rgb(image: torch.Tensor, mean, std) -> torch.Tensor:
    """A normalised ``[3, H, W]`` image back to ``[H, W, 3]`` in [0, 1]."""
    m = torch.tensor(mean)[:, None, None]
    s = torch.tensor(std)[:, None, None]
    return (image.cpu() * s + m).clamp(0, 1).permute(1, 2, 0)


def activation_maximisation(
    model: torch.nn.Module,
    cls: int,
    size: tuple[int, int],
    steps: int = 200,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 1e-2,
    seed: int = 0,
) -> torch.Tensor:
    """An input ``[3, H, W]`` (normalised space) that maximises logit ``cls``."""
    gen = torch.Generator().manual_seed(seed)
    x = (0.1 * torch.randn(1, 3, *size, generator=gen)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    was = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for _ in range(steps):
            opt.zero_grad()
            tv_loss = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
                x[..., 1:] - x[..., :-1]
            ).abs().mean()
            loss = -model(x)[0, cls] + l2 * x.pow(2).sum() + tv * tv_loss
            loss.backward()
            opt.step()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was)
    return x.detach()[0]


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logging.basicConfig(level=logging.INFO)
    common = [o for o in args.override if not o.startswith("method.")]
    per_method = dict(
        o[len("method.") :].split("=", 1) for o in args.override if o.startswith("method.")
    )
    cfg = compose_run(args.model, args.dataset, extra=common)
    model = instantiate(cfg.model).eval()
    meta = meta_of(model)
    node = OmegaConf.to_container(cfg.dataset, resolve=True)
    node = {
        k: v
        for k, v in node.items()
        if k in ("_target_", "split", "image_size", "seed", "mean", "std")
    }
    data = instantiate(node)
    batch = collate([data[i] for i in range(args.n_images)])
    names = args.methods or options("method")
    args.out.mkdir(parents=True, exist_ok=True)

    maps = method_maps(args.model, args.dataset, names, common, per_method, model, batch)
    draw_maps(plt, maps, batch, meta, args.n_images, args.out / "maps.png")
    layer = args.layer or meta.cam_layer
    draw_features(plt, model, batch, layer, meta, args.out / "features.png")
    for cls in args.classes:
        x = activation_maximisation(model, cls, tuple(meta.input_size), steps=args.steps)
        plt.imsave(args.out / f"actmax_{cls}.png", to_rgb(x, meta.mean, meta.std).numpy())
    log.info("wrote %s", args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes_cnn")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--n-images", type=int, default=4)
    parser.add_argument(
        "--methods", nargs="*", default=None, help="conf/method names (default: all)"
    )
    parser.add_argument("--layer", default=None, help="layer for the feature-map grid")
    parser.add_argument("--classes", nargs="*", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=200, help="activation-maximisation steps")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "figures" / "visualise")
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="Hydra overrides; method.<key>=<value> goes to every method having <key>",
    )
    return parser


def method_maps(
    model_name: str,
    dataset: str,
    names: list[str],
    common: list[str],
    per_method: dict[str, str],
    model: torch.nn.Module,
    batch,
) -> dict[str, torch.Tensor]:
    """The maps of every method of ``names`` that applies to ``model`` (the others skipped with a
    log line), ``method.<key>=<value>`` overrides given to those having ``<key>``."""
    maps = {}
    for name in names:
        mcfg = compose_run(model_name, dataset, name, common).method
        for key, value in per_method.items():  # method.<key>=<value> where the method has <key>
            if key in mcfg:
                mcfg[key] = type(mcfg[key])(value) if mcfg[key] is not None else value
        method = instantiate(mcfg)
        try:
            method.check(model)
        except ConfigError as err:
            log.info("skip %s: %s", name, err)
            continue
        maps[name] = method(model, batch.images, batch.targets)
    return maps


def draw_maps(plt, maps: dict[str, torch.Tensor], batch, meta, n_images: int, path: Path) -> None:
    """``maps.png``: each image, then each method's map over it."""
    fig, axes = plt.subplots(
        n_images,
        len(maps) + 1,
        squeeze=False,
        figsize=(1.6 * (len(maps) + 1), 1.6 * n_images),
    )
    for i in range(n_images):
        rgb = to_rgb(batch.images[i], meta.mean, meta.std)
        axes[i, 0].imshow(rgb)
        axes[i, 0].set_title("image" if i == 0 else "", fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(rgb)
            axes[i, j].imshow(m[i].numpy(), cmap="jet", alpha=0.5)
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_features(plt, model: torch.nn.Module, batch, layer: str, meta, path: Path) -> None:
    """``features.png``: up to 64 feature maps of ``layer`` for the first image."""
    store = {}
    handle = get_layer(model, layer).register_forward_hook(
        lambda _m, _i, o: store.__setitem__("a", o)
    )
    try:
        with torch.no_grad():
            model(batch.images[:1])
    finally:
        handle.remove()
    feats = store["a"][0]
    if feats.ndim == 4 or feats.ndim == 3 and feats.shape[0] > 0:
        k = min(64, feats.shape[0])
        cols = 8
        rows = -(-k // cols)
        fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(cols, rows))
        for idx, ax in enumerate(axes.flat):
            if idx < k and feats.ndim == 3:
                ax.imshow(feats[idx].numpy(), cmap="viridis")
            ax.axis("off")
        fig.suptitle(f"{meta.name}: {layer}", fontsize=8)
        fig.savefig(path, dpi=120)
        plt.close(fig)


if __name__ == "__main__":
    main()
