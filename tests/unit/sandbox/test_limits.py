"""The limits of sandboxed code: checked values, the rlimits they become, the processes counted."""

from __future__ import annotations

import os
import resource
import threading

import pytest

from taskorch_nb.sandbox.limits import Limits, user_process_count

MB = 1024 * 1024


def test_limits_leave_nproc_alone_where_the_users_processes_cannot_be_counted() -> None:
    limits = Limits(cpu_seconds=5, memory_mb=64, max_processes=16)
    counted = {kind: soft for kind, soft, _ in limits.rlimits(nproc_extra=100)}
    uncounted = {kind for kind, _, _ in limits.rlimits(nproc_extra=None)}
    assert counted[resource.RLIMIT_NPROC] == min(116, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    assert resource.RLIMIT_NPROC not in uncounted
    assert set(counted) - uncounted == {resource.RLIMIT_NPROC}


def test_the_rlimits_are_the_settings_in_the_kernels_units() -> None:
    limits = Limits(cpu_seconds=5, memory_mb=64, max_processes=16, max_file_mb=2,
                    max_open_files=32)
    plan = {kind: (soft, hard) for kind, soft, hard in limits.rlimits(nproc_extra=0)}

    def capped(kind: int, want: int) -> int:
        hard = resource.getrlimit(kind)[1]
        return want if hard == resource.RLIM_INFINITY else min(want, hard)

    assert plan[resource.RLIMIT_CPU] == (capped(resource.RLIMIT_CPU, 5),
                                         capped(resource.RLIMIT_CPU, 6))  # SIGXCPU, then KILL
    assert plan[resource.RLIMIT_AS] == (capped(resource.RLIMIT_AS, 64 * MB),) * 2
    assert plan[resource.RLIMIT_NPROC] == (capped(resource.RLIMIT_NPROC, 16),) * 2
    assert plan[resource.RLIMIT_FSIZE] == (capped(resource.RLIMIT_FSIZE, 2 * MB),) * 2
    assert plan[resource.RLIMIT_NOFILE] == (capped(resource.RLIMIT_NOFILE, 32),) * 2
    assert plan[resource.RLIMIT_CORE] == (0, 0)
    for kind, (_, hard) in plan.items():  # never above what we may set ourselves
        ours = resource.getrlimit(kind)[1]
        assert ours == resource.RLIM_INFINITY or hard <= ours


@pytest.mark.parametrize(("field", "value"), [("cpu_seconds", 0), ("memory_mb", -1),
                                              ("max_processes", True), ("tmp_mb", 1.5),
                                              ("max_open_files", "256")])
def test_each_limit_is_a_positive_integer(field: str, value: object) -> None:
    settings: dict[str, object] = {"cpu_seconds": 5, "memory_mb": 64, field: value}
    with pytest.raises(ValueError, match=rf"^{field} must be a positive integer, not "):
        Limits(**settings)  # type: ignore[arg-type]


def test_the_users_processes_are_counted_with_their_threads() -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        ours = len(os.listdir("/proc/self/task"))  # this process's threads, the 4 included
        counted = user_process_count()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert ours >= 5
    assert counted >= ours  # every thread of ours counts, as RLIMIT_NPROC counts them
