"""A direct library call on a busy machine: `ex.logit_distillation("smoke")` idle and beside busy processes.

torch starts one OpenMP thread per core and, by default, an idle OpenMP thread spins; when other
work takes a core, every parallel region waits for the thread that lost it. `memkd.threads` sets
the policy (`MEMKD_THREADS`); this script measures each setting:
  before   MEMKD_THREADS=off: torch's own threads and wait policy (what memkd did before the policy)
  short    the default: idle threads spin briefly, then sleep (GOMP_SPINCOUNT=10000), torch's thread count
  passive  MEMKD_THREADS=passive: idle threads sleep at once (OMP_WAIT_POLICY=PASSIVE)
  auto     MEMKD_THREADS=auto: the short spin, and each call uses the cores other work leaves free
  1 thread MEMKD_THREADS=1: the short spin, one thread (the reference for a fully shared core)
at each load: idle, then beside 1 and 2 busy processes (single-thread spin loops this script
starts and stops itself; each also exits on its own after --max-load-s). Every setting runs in a
fresh Python (the wait policy is read once, when torch loads) with OMP_NUM_THREADS and
MKL_NUM_THREADS removed from its environment; one call warms up, then --repeats calls are timed.
`x idle` is the median over that setting's own idle median; `x before idle` over the `before` idle
median. Run it on an otherwise idle machine (the script prints the load it found before starting).

Run:  .venv/bin/python benchmarks/busy_machine.py [--quick] [--repeats 7] [--loads 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"before": "off", "short": "short", "passive": "passive", "auto": "auto", "1 thread": "1"}

# One fresh interpreter per setting and load: memkd first (it sets the wait policy before torch loads).
MEASURE = r"""
import json, sys, time
import memkd
from memkd import experiments as ex
import torch
repeats = int(sys.argv[1])
ex.logit_distillation("smoke", device="cpu")  # warm-up: first-call costs are not the policy's
times = []
for _ in range(repeats):
    start = time.perf_counter()
    ex.logit_distillation("smoke", device="cpu")
    times.append(time.perf_counter() - start)
import os
print(json.dumps({"times": times, "threads": torch.get_num_threads(), "wait": os.environ.get("OMP_WAIT_POLICY", "") or
                  ("spin " + os.environ["GOMP_SPINCOUNT"] if "GOMP_SPINCOUNT" in os.environ else "")}))
"""

SPIN = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"


def child_env(setting: str) -> dict[str, str]:
    """The environment of a measurement: this one without thread choices, plus MEMKD_THREADS."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MEMKD_THREADS")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["MEMKD_THREADS"] = SETTINGS[setting]
    return env


def start_load(processes: int, max_s: float) -> list[subprocess.Popen]:
    """`processes` single-thread spin loops, each ending by itself after `max_s` seconds at most."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN, str(max_s)]) for _ in range(processes)]
    time.sleep(1.0 if processes else 0.0)  # let them take their cores
    return spinners


def stop_load(spinners: list[subprocess.Popen]) -> None:
    for spinner in spinners:
        spinner.kill()
    for spinner in spinners:
        spinner.wait()


def measure(setting: str, repeats: int, timeout_s: float) -> dict:
    """{"times", "threads", "wait"} of one setting, or {"error"} when it failed or ran out of time."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(repeats)],
            env=child_env(setting),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout_s:g} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_load() -> str:
    """The load averages and runnable tasks now (from /proc/loadavg where there is one)."""
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        try:
            return " ".join(f"{v:.2f}" for v in os.getloadavg())
        except (AttributeError, OSError):
            return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed calls per cell (about a minute or two)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per cell (default 7; --quick: 3)")
    parser.add_argument("--loads", default="0,1,2", help="busy processes beside the call (default 0,1,2)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of {list(SETTINGS)}")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per cell before it is given up")
    parser.add_argument("--max-load-s", type=float, default=900.0, help="a busy process ends by itself after this")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    loads = [int(v) for v in args.loads.split(",")]
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or repeats < 1 or any(n < 0 for n in loads):
        parser.error(f"settings must be of {list(SETTINGS)}, repeats >= 1, loads >= 0; got {args}")

    import torch

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"
    )
    print(f"# load before starting (/proc/loadavg: 1, 5, 15 min, runnable/total): {machine_load()}")
    print(f"# ex.logit_distillation('smoke'): median of {repeats} calls after a warm-up, fresh process per cell")
    results: dict[tuple[int, str], dict] = {}
    started = time.perf_counter()
    for load in loads:
        spinners = start_load(load, args.max_load_s)
        try:
            for setting in settings:
                results[load, setting] = measure(setting, repeats, args.timeout)
                print(f"  {load} busy, {setting}: {results[load, setting]}", file=sys.stderr)
        finally:
            stop_load(spinners)

    def median(load: int, setting: str) -> float | None:
        cell = results.get((load, setting), {})
        return statistics.median(cell["times"]) if "times" in cell else None

    print()
    print("| busy processes | setting | threads | median s | min-max s | x idle | x before idle |")
    print("|---|---|---|---|---|---|---|")
    base = median(0, "before")
    for load in loads:
        for setting in settings:
            cell, m = results[load, setting], median(load, setting)
            if m is None:
                print(f"| {load} | {setting} | | {cell.get('error')} | | | |")
                continue
            idle = median(0, setting)
            own = f"{m / idle:.2f}x" if idle else ""
            vs_before = f"{m / base:.2f}x" if base else ""
            print(
                f"| {load} | {setting} | {cell['threads']} | {m:.3f} | {min(cell['times']):.3f}-"
                f"{max(cell['times']):.3f} | {own} | {vs_before} |"
            )
    print()
    for setting in settings:
        idle, one = median(0, setting), median(1, setting)
        if idle and one:
            verdict = "within" if one <= 1.5 * idle else "above"
            print(f"{setting}: beside one busy process {one / idle:.2f}x its idle time ({verdict} the 1.5x target)")
    print(f"# {time.perf_counter() - started:.0f} s in all; load after: {machine_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
