"""Models of a user's own for the cache tests: the same parameters, other code or arguments."""

from __future__ import annotations

import torch
from torch import nn


class Plain(nn.Module):
    """A tiny CNN; ``scale`` multiplies the logits (an argument without parameters)."""

    def __init__(self, num_classes: int = 8, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same weights for every instance and subclass
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, num_classes)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.head(self.features(x).mean((2, 3)))


class Squared(Plain):
    """The same parameters as :class:`Plain`, another forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).pow(2).mean((2, 3)))
