"""The charts' shared pieces: minimum marks, log axes for spread values, readable ink."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from taskorch_nb.plotkit import frame_of, ink, mark_ms, spread_axis, text_of


def test_a_mark_is_a_share_of_the_axis_and_never_zero() -> None:
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    assert mark_ms(t0, t0 + pd.Timedelta(seconds=10)) == pytest.approx(60.0)
    assert mark_ms(t0, t0 + pd.Timedelta(seconds=10), 0.02) == pytest.approx(200.0)
    assert mark_ms(t0, t0) == 1.0  # everything at one instant: still 1 ms wide


@pytest.mark.parametrize(("values", "log"), [
    ([26.45, 0.17], True), ([3, 1], False), ([100, 1], True), ([99, 1], False),
    ([5.0, 0.0], False), ([7.0], False), ([], False),
])
def test_values_a_hundred_times_apart_get_a_log_axis(values, log) -> None:
    axis = spread_axis(values)
    assert (axis.get("type") == "log") is log
    if log:  # a decade below the smallest: its bar has height
        assert axis["range"][0] == pytest.approx(math.log10(min(values)) - 1.0)


@pytest.mark.parametrize(("colour", "text"), [
    ("#455a64", "#ffffff"), ("#1565c0", "#ffffff"), ("#8e24aa", "#ffffff"),
    ("#d4e157", "#212121"), ("#ffa726", "#212121"), ("#ffffff", "#212121"),
])
def test_ink_reads_on_its_box(colour, text) -> None:
    assert ink(colour) == text


def test_frames_and_labels() -> None:
    assert [text_of(v) for v in (None, float("nan"), pd.NA)] == ["", "", ""]
    assert text_of(3) == "3"
    with pytest.raises(ValueError, match="lacks the column"):
        frame_of(pd.DataFrame({"a": [1]}), "spans_df", ("a", "b"))
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        frame_of(object(), "spans_df", ("a",))
