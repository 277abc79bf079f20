"""new_batch: everything a caller can get wrong is refused before any run starts."""

from __future__ import annotations

import pytest

from taskorch_nb import ConfigurationError, FakeClock, Orchestrator
from taskorch_nb.batch.local import LocalEngine


@pytest.fixture
def orch():
    made = Orchestrator(store=":memory:", clock=FakeClock())
    yield made
    made.close()


@pytest.mark.parametrize(("tasks", "options", "message"), [
    ([], {}, "no tasks"),
    ("one task", {}, "one string"),
    (["ok", ""], {}, "task #1"),
    (["ok"], {"engine": "spark"}, "unknown engine 'spark'"),
    (["ok"], {"max_concurrency": 0}, "max_concurrency"),
    (["ok"], {"budget": 1, "run_budget": 2}, "more than the batch's budget"),
    (["ok"], {"workers": 2}, "workers= is for engine='ray'"),
    (["ok"], {"workflow": "nope"}, "nope"),
])
def test_bad_input_is_refused_before_any_run(orch, tasks, options, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        orch.map(tasks, **options)
    assert orch.history().empty
    assert orch.provider.call_count == 0


def test_a_good_batch_is_prepared_not_started(orch) -> None:
    batch = orch.map(["a", "b"], budget=2, run_budget=1, max_concurrency=7)  # no loop here
    assert isinstance(batch.engine, LocalEngine)
    assert batch.status["QUEUED"] == 2
    assert (batch.budget, batch.run_budget, batch.max_concurrency) == (2, 1, 7)
    assert [r.guard.limit for r in batch.runs] == [1, 1]
    assert orch.provider.call_count == 0
