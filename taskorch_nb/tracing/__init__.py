"""Tracing: spans derived from events, DataFrames for post-mortems, Langfuse export.

`LangfuseExporter` lives in `taskorch_nb.tracing.langfuse` and loads the SDK only
when it first exports; the frames functions import pandas when called.
"""

from __future__ import annotations

from taskorch_nb.core.pattern_frame import patterns_df as patterns_df
from taskorch_nb.tracing.frames import cost_df as cost_df
from taskorch_nb.tracing.frames import events_df as events_df
from taskorch_nb.tracing.frames import spans_df as spans_df
from taskorch_nb.tracing.langfuse import LangfuseExporter as LangfuseExporter
from taskorch_nb.tracing.spans import ADHOC_TRACE as ADHOC_TRACE
from taskorch_nb.tracing.spans import Score as Score
from taskorch_nb.tracing.spans import Span as Span
from taskorch_nb.tracing.spans import SpanBuilder as SpanBuilder
from taskorch_nb.tracing.spans import build_spans as build_spans

__all__ = [
    "ADHOC_TRACE",
    "LangfuseExporter",
    "Score",
    "Span",
    "SpanBuilder",
    "build_spans",
    "cost_df",
    "events_df",
    "patterns_df",
    "spans_df",
]
