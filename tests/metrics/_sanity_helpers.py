"""Small models, batches and methods for the sanity-check tests (no conftest: imported directly)."""

from __future__ import annotations

import torch
from captum.attr import GuidedBackprop as _CaptumGuidedBackprop
from torch import Tensor, nn

from bench.core.batch import Batch
from bench.core.context import Context
from bench.methods.base import Method
from bench.methods.gradient import Gradient


class TinyBNNet(nn.Module):
    """conv-BN-ReLU twice, global average pooling, a linear head: every layer kind MPRT randomises."""

    def __init__(self, num_classes: int = 3, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def tiny_bn_net(num_classes: int = 3, seed: int = 0) -> nn.Module:
    """A :class:`TinyBNNet` with non-trivial batch-norm statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    model = TinyBNNet(num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def images(n: int = 4, size: int = 32, seed: int = 1) -> Tensor:
    """Smooth random images ``[n, 3, size, size]`` (upsampled noise, so maps have structure)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def batch_of(x: Tensor, targets: Tensor) -> Batch:
    b, _, h, w = x.shape
    return Batch(
        images=x,
        targets=targets.long(),
        ids=[f"img{i}" for i in range(b)],
        orig_sizes=torch.tensor([[h, w]] * b),
    )


def context(model: nn.Module, method, seed: int = 0, chunk_size: int = 256) -> Context:
    return Context(model=model, method=method, seed=seed, chunk_size=chunk_size)


class SignedGradient(Method):
    """d logit / d x summed over channels (signed, so the "signed" similarities have content)."""

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        x = images.detach().requires_grad_(True)
        with torch.enable_grad():
            score = model(x).gather(1, targets[:, None]).sum()
            (g,) = torch.autograd.grad(score, x)
        return g


class GuidedBackprop(Method):
    """captum's guided backpropagation, channel-summed (used only if methods/ has none)."""

    def __init__(self, reduction: str = "max_abs") -> None:
        super().__init__(reduction)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return _CaptumGuidedBackprop(model).attribute(images, target=targets)


def guided_backprop() -> Method:
    """``bench.methods.gradient.GuidedBackprop`` when another engineer has added it, else the local wrapper."""
    try:
        from bench.methods.gradient import GuidedBackprop as Shared  # type: ignore[attr-defined]
    except ImportError:
        return GuidedBackprop()
    return Shared()


def gradient() -> Method:
    return Gradient()


def state_of(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
