"""Class activation maps: one base class does hooks, forward/backward and pooling; variants weight.

Shape after pytorch-grad-cam's ``BaseCAM``, but batched and kept on the device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.errors import ConfigError
from methods.base import Method, get_layer


class BaseCAM(Method):
    """``relu(sum_k w_k A_k)`` over the feature maps ``A`` ``[B, K, h, w]`` of ``layer``.

    Subclasses implement :meth:`weights`; ``A`` and the gradients of the target logits with
    respect to ``A`` are handed to it. The map is returned at the layer's resolution; the base
    class upsamples it bilinearly.

    Args:
        layer: the layer's name in ``model.named_modules()`` (from the model config's ``cam_layer``).
        relu: apply the ReLU of the paper to the weighted sum.
    """

    needs_gradients = True

    def __init__(self, layer: str | None, relu: bool = True) -> None:
        super().__init__(reduction="sum")
        self.layer = layer
        self.relu = relu

    def check(self, model: nn.Module) -> None:
        if not self.layer:
            raise ConfigError(
                f"{self.name} needs a convolutional layer, but model {type(model).__name__} "
                "states no cam_layer; set method.layer=<module name>."
            )
        get_layer(model, self.layer)

    def weights(self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor,
                targets: Tensor) -> Tensor:
        """Per-channel weights ``[B, K]`` (or per-position ``[B, K, h, w]``)."""
        raise NotImplementedError

    def activations(self, model: nn.Module, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor | None]:
        """Feature maps ``[B, K, h, w]`` of the layer and, if needed, d(target logit)/dA."""
        self.check(model)
        layer = get_layer(model, self.layer)
        store: dict[str, Tensor] = {}

        def hook(_module: nn.Module, _inp: tuple, out: Tensor) -> None:
            store["acts"] = out

        handle = layer.register_forward_hook(hook)
        try:
            with torch.set_grad_enabled(self.needs_gradients):
                x = images.detach().requires_grad_(self.needs_gradients)
                logits = model(x)
                acts = store["acts"]
                if acts.ndim != 4:
                    raise ConfigError(
                        f"{self.name} needs a layer with [B, K, h, w] output; layer={self.layer} "
                        f"gives shape {tuple(acts.shape)}."
                    )
                grads = None
                if self.needs_gradients:
                    score = logits.gather(1, targets[:, None]).sum()
                    (grads,) = torch.autograd.grad(score, acts)
        finally:
            handle.remove()
        return acts.detach(), grads

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        acts, grads = self.activations(model, images, targets)
        w = self.weights(acts, grads, model, images, targets)
        cam = (w[:, :, None, None] * acts).sum(1) if w.ndim == 2 else (w * acts).sum(1)
        return cam.clamp_min(0) if self.relu else cam


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., ICCV 2017): weights = spatial mean of the gradients."""

    def weights(self, acts: Tensor, grads: Tensor | None, model: nn.Module, images: Tensor,
                targets: Tensor) -> Tensor:
        return grads.mean(dim=(2, 3))
