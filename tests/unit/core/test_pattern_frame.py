"""patterns_df: one row per failure pattern, typed columns, missing keys as <NA>."""

from __future__ import annotations

import pandas as pd

from taskorch_nb.core.pattern_frame import patterns_df
from taskorch_nb.testing import FakeClock
from tests.unit.tracing.test_frames import is_utc_datetime


def test_columns_dtypes_and_values() -> None:
    records = [
        {"name": "search_api_timeout", "signature": "abc", "tool": "search_api",
         "category": "timeout", "occurrences": 3, "first_seen": FakeClock.EPOCH,
         "last_seen": FakeClock.EPOCH + 60, "fallback": "cached_search",
         "prompt": "use the cache", "applied": 2, "recovered": 2, "source": "local",
         "known": True, "demoted": False, "note": {"x": 1}},
        {"name": "llm_rate_limit", "signature": "def", "tool": "llm", "category": "rate_limit"},
    ]
    df = patterns_df(records)
    for name in ("name", "signature", "tool", "category", "occurrences", "first_seen",
                 "last_seen", "fallback", "corrective_prompt", "applied", "recovered",
                 "source", "known", "demoted"):
        assert name in df.columns
    assert df["corrective_prompt"].iloc[0] == "use the cache"
    assert df["occurrences"].dtype == "Int64"
    assert df["occurrences"].isna().tolist() == [False, True]
    assert is_utc_datetime(df["last_seen"])
    assert df["last_seen"].iloc[0] == pd.Timestamp("2026-01-01 00:01", tz="UTC")
    assert pd.isna(df["first_seen"].iloc[1])
    assert df["known"].tolist()[0] is True
    assert pd.isna(df["known"].iloc[1])
    assert df["note"].iloc[0] == {"x": 1}
    assert len(patterns_df([]).columns) >= 14


def test_an_empty_list_still_has_every_typed_column() -> None:
    df = patterns_df([])
    assert len(df) == 0
    assert list(df.columns) == [
        "name", "signature", "tool", "category", "occurrences", "first_seen", "last_seen",
        "fallback", "corrective_prompt", "applied", "recovered", "source", "approval",
        "approved_by", "known", "demoted",
    ]
    assert df["applied"].dtype == "Int64"
    assert df["demoted"].dtype == "boolean"


def test_corrective_prompt_wins_over_prompt_and_prompt_is_not_a_column() -> None:
    df = patterns_df([{"name": "a", "corrective_prompt": "kept", "prompt": "dropped"},
                      {"name": "b", "prompt": "read"}])
    assert df["corrective_prompt"].tolist() == ["kept", "read"]
    assert "prompt" not in df.columns


def test_records_are_not_changed() -> None:
    record = {"name": "a", "prompt": "p"}
    patterns_df([record])
    assert record == {"name": "a", "prompt": "p"}


def test_epoch_seconds_become_utc_times_to_the_second() -> None:
    df = patterns_df([{"name": "a", "first_seen": 0, "last_seen": 1.5}])
    assert df["first_seen"].iloc[0] == pd.Timestamp("1970-01-01", tz="UTC")
    assert df["last_seen"].iloc[0] == pd.Timestamp("1970-01-01 00:00:01.5", tz="UTC")


def local_and_federated() -> list[dict]:
    return [
        {"name": "search_api_timeout", "signature": "a", "tool": "search_api",
         "category": "timeout", "status": 504, "message": "<n> Gateway Timeout",
         "first_seen": FakeClock.EPOCH, "last_seen": FakeClock.EPOCH + 1, "trust": "local",
         "remote": {}},
        {"name": "docs_rate_limit", "signature": "b", "tool": "read_docs",
         "category": "rate_limit", "status": None, "message": "slow down after <n> calls",
         "trust": "confirmed",
         "remote": {"occurrences": 7, "applied": 5, "recovered": 4,
                    "projects": ["project-a", "project-b"], "apply_fallback": True}},
    ]


def test_times_are_nanosecond_utc_like_the_other_frames() -> None:
    df = patterns_df(local_and_federated())
    assert str(df["first_seen"].dtype) == "datetime64[ns, UTC]"
    assert str(df["last_seen"].dtype) == "datetime64[ns, UTC]"
    assert str(patterns_df([])["last_seen"].dtype) == "datetime64[ns, UTC]"


def test_status_message_and_trust_have_proper_dtypes() -> None:
    df = patterns_df(local_and_federated())
    assert df["status"].dtype == "Int64"
    assert df["status"].tolist()[0] == 504
    assert pd.isna(df["status"].iloc[1])
    assert isinstance(df["message"].dtype, pd.StringDtype)
    assert isinstance(df["trust"].dtype, pd.CategoricalDtype)
    assert list(df["trust"].cat.categories) == ["local", "approved", "confirmed"]
    assert df["trust"].tolist() == ["local", "confirmed"]
    assert object not in set(df.dtypes)


def test_the_message_reads_with_its_http_status_not_the_signature_mask() -> None:
    df = patterns_df(local_and_federated())
    # the mask "<n>" is for the signature; the HTTP status it hides is in the record
    assert df["message"].tolist() == ["504 Gateway Timeout", "slow down after <n> calls"]


def test_the_hubs_view_becomes_typed_columns_instead_of_a_dict() -> None:
    df = patterns_df(local_and_federated())
    assert "remote" not in df.columns
    assert df["remote_occurrences"].dtype == "Int64"
    assert df["remote_occurrences"].tolist()[1] == 7
    assert pd.isna(df["remote_occurrences"].iloc[0])
    assert df["remote_recovered"].tolist()[1] == 4
    assert df["remote_projects"].tolist()[1] == "project-a, project-b"
    assert isinstance(df["remote_projects"].dtype, pd.StringDtype)
    assert df["remote_apply_fallback"].dtype == "boolean"
