"""Datasets: each yields samples that collate into a :class:`bench.data.base.Batch`."""

from bench.data.base import Batch, ImageDataset, Sample, collate

__all__ = ["Batch", "ImageDataset", "Sample", "collate"]
