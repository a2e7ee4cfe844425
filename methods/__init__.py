"""Attribution methods: callables ``method(model, images, targets) -> Tensor[B, H, W]``."""

from methods.base import Method, get_layer, preserve_model

__all__ = ["Method", "get_layer", "preserve_model"]
