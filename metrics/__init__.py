"""Metrics: callables ``metric(ctx, batch, maps) -> MetricOutput`` with per-image scores."""

from bench.metrics.base import Metric, MetricOutput

__all__ = ["Metric", "MetricOutput"]
