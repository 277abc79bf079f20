"""Batches: many runs under one budget, in this process or on a Ray cluster."""

from __future__ import annotations

from taskorch_nb.batch.batch import Batch as Batch
from taskorch_nb.batch.guard import BatchRunGuard as BatchRunGuard
from taskorch_nb.batch.worker import RunSummary as RunSummary

__all__ = ["Batch", "BatchRunGuard", "RunSummary"]
