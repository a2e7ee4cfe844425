"""Gradient-based methods, computed by captum (wrapped, not rewritten)."""

from __future__ import annotations

from captum.attr import IntegratedGradients as _CaptumIG
from captum.attr import Saliency as _CaptumSaliency
from torch import Tensor, nn

from bench.errors import ConfigError
from methods.base import Method


class Gradient(Method):
    """Gradient saliency ``|dy_c/dx|`` (Simonyan et al., ICLR-W 2014), max over channels by default."""

    def __init__(self, reduction: str = "max_abs") -> None:
        super().__init__(reduction)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return _CaptumSaliency(model).attribute(images, target=targets, abs=True)


class IntegratedGradients(Method):
    """Integrated gradients (Sundararajan et al., ICML 2017) along the straight path from a baseline.

    Args:
        n_steps: points of the path integral.
        baseline: constant baseline value in normalised space (0 = the dataset mean colour).
        integration: captum's rule, ``gausslegendre`` or ``riemann_trapezoid`` etc.
        internal_batch_size: most path points (over all images) in one forward/backward pass.
        reduction: channel pooling (signed sum by default).
    """

    def __init__(
        self,
        n_steps: int = 50,
        baseline: float = 0.0,
        integration: str = "gausslegendre",
        internal_batch_size: int | None = 256,
        reduction: str = "sum",
    ) -> None:
        super().__init__(reduction)
        if n_steps < 1:
            raise ConfigError(f"n_steps={n_steps} is not valid; accepted: an integer >= 1.")
        self.n_steps = n_steps
        self.baseline = float(baseline)
        self.integration = integration
        self.internal_batch_size = internal_batch_size

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return _CaptumIG(model).attribute(
            images,
            baselines=self.baseline,
            target=targets,
            n_steps=self.n_steps,
            method=self.integration,
            internal_batch_size=self.internal_batch_size,
        )
