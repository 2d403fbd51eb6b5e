"""How CPU threads wait and how many a memkd call uses, so that a call stays near its idle time on
a shared machine.

Owns: the OpenMP wait policy set when `memkd` is imported (`set_wait_policy`), the
thread count applied at the start of every experiment call (`apply_thread_policy`, called by
`memkd.declare.experiment`), and the estimate of the cores other work leaves free (`free_cores`).

Why: torch starts one OpenMP thread per core, and by default an idle OpenMP thread spins at
every barrier, so one thread descheduled by other work stalls the rest. Beside one other busy
process on 2 cores, `ex.logit_distillation("smoke")` took 0.44-0.87 s with torch's 2 threads
against 0.19 s idle, 0.21 s with 1 thread and 0.27 s with OMP_WAIT_POLICY=PASSIVE (Dec 2026); under
heavier load one call took 52.8 s against 0.23 s with 1 thread. `benchmarks/busy_machine.py`
measures each setting below.

Fully passive waiting has its own cost: every parallel region then wakes sleeping threads, and on an
idle machine the book's small networks ran 2.5-5x slower with OMP_WAIT_POLICY=PASSIVE than with
torch's spinning threads (`similarity_distillation("smoke")` 1.8 s against 0.5-0.7 s, `toy_2d("smoke")`
11-13 s against 2.5-2.7 s; 2-core AMD EPYC, 2026-12-07). A short spin (GOMP_SPINCOUNT=10000: an idle
thread spins about ten thousand iterations, then sleeps) was as fast as spinning when idle (0.47 s and
1.6 s) and gives the core up soon after a region ends.

`MEMKD_THREADS` chooses (read at import for the wait policy, at every call for the count):
- unset or `short` (the default): idle threads spin briefly, then sleep (GOMP_SPINCOUNT=10000 for the
  GNU OpenMP runtime that torch's Linux wheels use, set when `memkd` is imported before torch and the
  user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT; OpenMP reads it once, when torch loads), with
  torch's own thread count. The count never depends on the load, so a seed gives the same numbers on an
  idle and on a busy machine (a different count sums in another order: at the smoke profile of
  `logit_distillation`, 1 and 2 threads gave held-out accuracies up to 0.125 apart). Beside busy work it
  is slow (beside one busy process 1.28 s, 4.3x its idle 0.30 s; 2-core AMD EPYC, 2026-12-07 16:45 UTC);
- a number N: the short spin, and every call uses N threads: the same numbers at any load, and on a
  shared machine `MEMKD_THREADS=1` is the choice to make (0.27 s idle, 0.35 s beside one busy process);
- `auto`: the short spin, and each call uses only the cores other work leaves free (`free_cores`, at
  least one): fast beside busy work (0.29 s idle, 0.41 s beside one busy process, 0.64 s beside two;
  torch's own spinning threads took 0.34 s, 1.59 s and 1.80 s, once up to 108 s), but the count follows the load,
  so the numbers can too: never the default, since a book or a test must give one seed one answer;
- `passive`: idle threads sleep at once (OMP_WAIT_POLICY=PASSIVE): gentle on a crowded machine (0.44 s
  beside one busy process), the slowest on an idle one (1.1 s);
- `off`: memkd leaves the wait policy and the thread count alone.
A count is never imposed over the user's own choice: OMP_NUM_THREADS or MKL_NUM_THREADS in the
environment (also set by `memkd sweep` / `memkd book` when runs share the machine) keeps torch's
count for `auto`, and an explicit `torch.set_num_threads(n)` (a count that is neither torch's
default nor the one memkd set last) is kept for `auto` and N. Every chapter's meta.json records
the count a run used (`threads`).
"""

from __future__ import annotations

import os
import sys
import time

from memkd.config import invalid

VARIABLE = "MEMKD_THREADS"  # short (default) | auto | passive | off | a number of threads
SHORT_SPIN = "10000"  # GOMP_SPINCOUNT of the default: spin this many iterations, then sleep
USER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # a count chosen outside memkd
_state: dict = {"set": None}  # the count memkd set last


def allowed_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def own_running_threads() -> int:
    """How many threads of this process are runnable now (Linux: state R in /proc/self/task/*/stat), at least 1.

    The runnable count of /proc/loadavg includes this process's own threads: the reading thread and any
    OpenMP worker still spinning after the last parallel region. Left in, they made a call on an idle
    machine see "one core busy" after its first parallel step and flip to one thread.
    """
    try:
        running = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as handle:
                    state = handle.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            running += state == "R"
        return max(1, running)
    except OSError:
        return 1


def busy_elsewhere(samples: int = 3, spacing_s: float = 0.002) -> float:
    """How many cores other processes keep busy now.

    Linux: the median over `samples` reads of the runnable tasks in /proc/loadavg (its fourth
    field, "running/total"), less this process's own runnable threads (`own_running_threads`): an
    instant count, unlike the load averages, which take about a minute to follow a change. Elsewhere:
    the 1-minute load average (os.getloadavg), or 0 where there is none (Windows).
    """
    try:
        counts = []
        for i in range(samples):
            with open("/proc/loadavg") as handle:
                runnable = int(handle.read().split()[3].split("/")[0])
            counts.append(max(0, runnable - own_running_threads()))
            if i + 1 < samples:
                time.sleep(spacing_s)
        return float(sorted(counts)[len(counts) // 2])
    except (OSError, IndexError, ValueError):
        pass
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def free_cores() -> int:
    """The cores other work leaves free for this process, at least 1 and at most `allowed_cores`:
    the machine's cores less those busy elsewhere (on a large node where this process may use
    only some cores, work on the other cores does not count against it)."""
    machine = max(1, os.cpu_count() or 1)
    free_on_machine = machine - int(busy_elsewhere() + 0.5)
    return max(1, min(allowed_cores(), free_on_machine))


def torch_defaults() -> set[int]:
    """The counts torch may start with when nobody chose one: one per allowed core, per core of
    the machine, or per physical core (torch's choice where cores have two hardware threads)."""
    cores = os.cpu_count() or 1
    return {allowed_cores(), cores} | ({cores // 2} if cores >= 4 else set())


def requested() -> str | int:
    """What `MEMKD_THREADS` asks for: "short" (the default), "auto", "passive", "off" or a number of threads.

    Raises ValueError (the one message format) for anything else.
    """
    text = os.environ.get(VARIABLE, "").strip().lower() or "short"
    if text in ("short", "passive", "auto", "off"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise invalid(
        VARIABLE,
        "the environment",
        "'short', 'passive', 'auto', 'off' or a number of threads >= 1",
        os.environ[VARIABLE],
    )


def apply_thread_policy() -> int | None:
    """Set torch's intra-op threads for the call about to run (see the module's docstring);
    return the count set, or None where the policy leaves torch's count alone."""
    choice = requested()
    if choice in ("short", "passive", "off") or (choice == "auto" and any(v in os.environ for v in USER_VARIABLES)):
        return None
    import torch

    current = torch.get_num_threads()
    if current != _state["set"] and current not in torch_defaults():
        return None  # the user called torch.set_num_threads
    threads = choice if isinstance(choice, int) else free_cores()
    if threads != current:
        torch.set_num_threads(threads)
    _state["set"] = threads
    return threads


def set_wait_policy() -> bool:
    """Set the wait policy for this process (and the processes it starts) when torch has not loaded yet and
    the user set none: GOMP_SPINCOUNT=10000 (a short spin, the default) or, with MEMKD_THREADS=passive,
    OMP_WAIT_POLICY=PASSIVE; nothing with "off". Return whether it set one."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    try:
        choice = requested()
    except ValueError:
        return False  # reported at the first call (apply_thread_policy)
    if choice == "off":
        return False
    if choice == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return True


__all__ = [
    "SHORT_SPIN",
    "VARIABLE",
    "allowed_cores",
    "own_running_threads",
    "busy_elsewhere",
    "free_cores",
    "torch_defaults",
    "requested",
    "apply_thread_policy",
    "set_wait_policy",
]
