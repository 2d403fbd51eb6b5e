"""The thread policy (memkd.threads): idle OpenMP threads spin briefly, then sleep; MEMKD_THREADS chooses the
count (short, the default: torch's own count, whatever the load; auto: the cores other work leaves free; N; off), and the user's own choice is never overridden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memkd import threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    saved = dict(threads._state)
    yield
    torch.set_num_threads(before)
    threads._state.update(saved)


def fresh_python(code: str, **env: str) -> str:
    """stdout of `code` in a fresh interpreter (nothing imported yet), with `env` added."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", threads.VARIABLE)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
    )
    return done.stdout.strip()


def test_importing_memkd_before_torch_sets_a_short_spin_or_the_chosen_wait():
    show = "import os, memkd, torch; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    assert fresh_python(show) == f"None {threads.SHORT_SPIN}"  # the default: spin briefly, then sleep
    assert fresh_python(show, MEMKD_THREADS="passive") == "PASSIVE None"
    assert fresh_python(show, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE None"  # the user's choice stays
    assert fresh_python(show, GOMP_SPINCOUNT="5") == "None 5"
    assert fresh_python(show, MEMKD_THREADS="off") == "None None"
    too_late = "import os, torch, memkd; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    assert fresh_python(too_late) == "None None"


@pytest.mark.parametrize(
    "text, expected",
    [("", "short"), ("passive", "passive"), ("AUTO", "auto"), ("short", "short"), ("off", "off"), ("3", 3)],
)
def test_memkd_threads_is_read(monkeypatch, text, expected):
    monkeypatch.setenv(threads.VARIABLE, text)
    assert threads.requested() == expected


@pytest.mark.parametrize("text", ["0", "-1", "many", "1.5"])
def test_a_bad_memkd_threads_is_refused_in_the_one_format(monkeypatch, text):
    monkeypatch.setenv(threads.VARIABLE, text)
    with pytest.raises(
        ValueError,
        match=r"^The 'MEMKD_THREADS' parameter of the environment must be 'short', "
        rf"'passive', 'auto', 'off' or a number of threads >= 1. Got '{text}' instead.$",
    ):
        threads.requested()


def test_free_cores_leave_what_others_use_and_at_least_one(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "allowed_cores", lambda: 2)
    for busy, free in ((0.0, 2), (0.4, 2), (1.0, 1), (2.0, 1), (7.0, 1)):
        monkeypatch.setattr(threads, "busy_elsewhere", lambda busy=busy: busy)
        assert threads.free_cores() == free
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # a large node, 4 cores allowed to this process
    monkeypatch.setattr(threads, "allowed_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 40.0)
    assert threads.free_cores() == 4
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 62.0)
    assert threads.free_cores() == 2


def test_busy_elsewhere_counts_a_spinning_process():
    """A busy process beside this one is counted (Linux: the runnable tasks of /proc/loadavg)."""
    if not Path("/proc/loadavg").is_file():
        pytest.skip("no /proc/loadavg here")
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"]
    )
    try:
        import time

        time.sleep(0.5)
        assert threads.busy_elsewhere(samples=9) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_auto_sizes_each_call_to_the_free_cores(monkeypatch, restore_threads):
    for name in threads.USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(threads.VARIABLE, "auto")
    torch.set_num_threads(threads.allowed_cores())  # torch's default
    threads._state["set"] = None
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    assert threads.apply_thread_policy() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    assert threads.apply_thread_policy() == 2 and torch.get_num_threads() == 2  # memkd's own count follows the load
    monkeypatch.setenv(threads.VARIABLE, "3")
    assert threads.apply_thread_policy() == 3 and torch.get_num_threads() == 3


def test_the_users_own_count_is_never_changed(monkeypatch, restore_threads):
    for name in threads.USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    monkeypatch.setattr(threads, "torch_defaults", lambda: {8})
    monkeypatch.setenv(threads.VARIABLE, "auto")
    threads._state["set"] = None
    torch.set_num_threads(3)  # the user's choice
    assert threads.apply_thread_policy() is None and torch.get_num_threads() == 3
    monkeypatch.setenv(threads.VARIABLE, "2")
    assert threads.apply_thread_policy() is None and torch.get_num_threads() == 3
    monkeypatch.setenv(threads.VARIABLE, "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # chosen in the environment (a sweep's share, or the user)
    torch.set_num_threads(8)
    assert threads.apply_thread_policy() is None and torch.get_num_threads() == 8
    for choice in ("short", "passive", "off"):
        monkeypatch.setenv(threads.VARIABLE, choice)
        assert threads.apply_thread_policy() is None and torch.get_num_threads() == 8


def test_every_experiment_call_applies_the_policy(monkeypatch, restore_threads):
    from memkd import experiments as ex

    calls = []
    monkeypatch.setattr("memkd.declare.apply_thread_policy", lambda: calls.append(1))
    ex.logit_distillation("smoke", device="cpu", epochs=2, teacher_epochs=50, teacher_stop="first_perfect")
    assert calls == [1]


def test_the_default_count_does_not_follow_the_load(monkeypatch, restore_threads):
    """One seed, one answer: by default the thread count is torch's, whatever other work runs."""
    for name in threads.USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(threads.VARIABLE, raising=False)
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    assert threads.apply_thread_policy() is None and torch.get_num_threads() == before


def test_this_process_own_threads_are_not_counted_as_other_work(monkeypatch):
    """After a parallel step torch's workers may still spin: they are this process, not other work."""
    import io

    monkeypatch.setattr(threads, "open", lambda path: io.StringIO("1.00 1.00 1.00 3/120 999\n"), raising=False)
    monkeypatch.setattr(threads, "own_running_threads", lambda: 1)
    assert threads.busy_elsewhere(samples=1) == 2.0  # 3 runnable, 1 of them the reader
    monkeypatch.setattr(threads, "own_running_threads", lambda: 3)  # the reader and two spinning workers
    assert threads.busy_elsewhere(samples=1) == 0.0


def test_own_running_threads_counts_at_least_the_reader():
    if not Path("/proc/self/task").is_dir():
        pytest.skip("no /proc/self/task here")
    assert 1 <= threads.own_running_threads() <= len(list(Path("/proc/self/task").iterdir()))
