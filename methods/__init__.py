"""Attribution methods: callables ``method(model, images, targets) -> Tensor[B, H, W]``."""

from bench.methods.base import Method, preserve_model

__all__ = ["Method", "preserve_model"]
