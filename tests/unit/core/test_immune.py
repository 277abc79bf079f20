from __future__ import annotations

from taskorch_nb import FakeClock
from taskorch_nb.core.immune import ImmuneSystem, Pattern, failure_signature, mask_message
from taskorch_nb.core.retry import Failure, classify
from taskorch_nb.testing import http_error


def test_masking_makes_one_signature_per_outage() -> None:
    a = Failure("timeout", True, 504, message="timeout after 30.5 s calling "
                "https://x.io/q?id=9 for 'alice' req 8f3a9c2d1e4b5f60")
    b = Failure("timeout", True, 504, message="timeout after 12 s calling "
                "https://y.io/other for 'bob' req 0123456789abcdef")
    assert mask_message(a.message) == "timeout after <n> s calling <url> for <str> req <id>"
    assert failure_signature("search_api", a) == failure_signature("search_api", b)
    assert failure_signature("search_api", a) != failure_signature("other_tool", a)
    c = Failure("server_error", True, 503, message=a.message)
    assert failure_signature("search_api", a) != failure_signature("search_api", c)


def test_learning_applying_recovering_and_names() -> None:
    seen: list = []
    immune = ImmuneSystem(clock=FakeClock(), emit=seen.append)
    failure = classify(http_error(504), FakeClock())
    pattern = immune.analyze("search_api", failure, fallback="cached_search")
    assert pattern.name == "search_api_timeout"
    assert not pattern.known
    assert immune.match("search_api", failure) is None
    immune.applied(pattern)
    immune.outcome(pattern, recovered=True)
    assert pattern.known
    assert immune.match("search_api", failure) is pattern
    assert [e.type for e in seen] == ["pattern.learned", "pattern.applied", "pattern.recovered"]
    frame = immune.patterns_df()
    assert list(frame["name"]) == ["search_api_timeout"]
    for column in ("name", "signature", "tool", "category", "occurrences", "first_seen",
                   "last_seen", "fallback", "corrective_prompt", "applied", "recovered",
                   "source"):
        assert column in frame.columns


def test_federated_pattern_follows_the_local_trust_flags() -> None:
    immune = ImmuneSystem(clock=FakeClock())
    base = {"signature": "ab" * 16, "name": "search_api_timeout", "tool": "search_api",
            "category": "timeout", "status": 504, "fallback": "cached_search",
            "corrective_prompt": "Use cached_search.", "occurrences": 4, "applied": 2,
            "recovered": 2, "source": ["project-a"], "trust": "confirmed"}
    assert immune.merge_federated([{**base, "apply_fallback": True}]) == 1
    pattern = immune.get(base["signature"])
    assert pattern is not None
    assert pattern.known  # its fallback may be taken at the first failure ...
    assert pattern.usable_prompt is None  # ... but an unapproved prompt is not injected
    assert pattern.approval == "pending"
    assert pattern.source == "federation"
    assert immune.merge_federated([{**base, "apply_fallback": False}]) == 0
    assert not pattern.known
    assert immune.export() == []  # federated counts are never pushed back as ours


def test_adopt_takes_another_processs_pattern_new_or_in_place() -> None:
    saved: list[Pattern] = []
    immune = ImmuneSystem(clock=FakeClock(), save=lambda p, added: saved.append(p))
    remote = Pattern(signature="s1", name="search_api_timeout", tool="search_api",
                     category="timeout", fallback="cached_search", occurrences=3)
    assert immune.adopt(remote) is True
    assert immune.get("s1").fallback == "cached_search"
    held = immune.get("s1")  # a reference someone holds keeps pointing at the live one
    newer = Pattern(signature="s1", name="search_api_timeout", tool="search_api",
                    category="timeout", fallback="mirror_search", occurrences=5)
    assert immune.adopt(newer) is False
    assert (held.fallback, held.occurrences, len(immune)) == ("mirror_search", 5, 1)
    assert saved == []  # adopted, not saved again
