"""One check of memkd on a GPU, printed as one table: tests, speed, a paper-scale chapter, TF32.

Steps (each row of the table names its step; a step that fails or runs out of time says so in
its row and the other steps still run; the table is rewritten to --out after every step):
  1. tests    `pytest -m cuda tests` (fused against autograd, the stacked ensemble against the
              loop, the CUDA graph against eager; all skipped without a CUDA device);
  2. speed    20 soft-label students as one batched ensemble (`train_students`, the CUDA-graph
              path on a GPU) against a per-seed loop of `nn.Sequential` + `torch.optim.Adam`, at
              the smoke, quick and paper shapes of `benchmarks/ensemble_speed.py`: s/epoch of
              each, their ratio, and the ensemble's FLOP rate as a fraction of a large fp32
              `torch.mm` measured in the same run (the 3x-forward FLOP count of that script);
  3. chapter  chapter 02 at profile=paper under papermill: wall time, the chapter's own elapsed
              time (meta.json), peak GPU memory (torch.cuda.max_memory_allocated in the kernel,
              written at its exit by a sitecustomize hook; and device memory in use, polled), and
              how many of its claims hold;
  4. tf32     Fig 2 at the paper's shapes (alpha 0.6, width 500, 20 students), once in full fp32
              and once with TF32 matmuls (`memkd.device.set_tf32`): held-out accuracy of each,
              the paired difference and both wall times.
The order of execution is 1, 2, 4, 3: the chapter gets what is left of --budget.

--dry runs the same steps on the CPU at tiny sizes (the smoke shape only, 4 students, few
epochs; chapter 02 at profile=smoke; Fig 2 at profile=smoke): the test suite runs it so that
this script cannot rot. TF32 does not exist on a CPU, so the dry difference is 0 by
construction.

Run:  benchmarks/gpu_check.sh [--dry] [--out FILE] [--budget SECONDS] [--steps 1,2,3,4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from ensemble_speed import (  # noqa: E402
    HIDDEN_LAYERS,
    LR,
    SHAPES,
    TEMPERATURE,
    Shape,
    forward_flops,
    make_data,
    run_loop,
)

from memkd.device import set_tf32, tf32_enabled  # noqa: E402
from memkd.distillation import train_students  # noqa: E402

CHAPTER = ROOT / "nbs" / "02_logit_distillation.ipynb"
PEAK_HOOK = '''\
"""Written by benchmarks/gpu_check.py: at exit, record this process's peak CUDA memory."""
import atexit, json, os, sys


def _memkd_peak_memory():
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    path = os.path.join(os.environ["MEMKD_PEAK_MEMORY_DIR"], f"peak-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump({"max_memory_allocated": torch.cuda.max_memory_allocated(),
                   "max_memory_reserved": torch.cuda.max_memory_reserved()}, f)


if os.environ.get("MEMKD_PEAK_MEMORY_DIR"):
    atexit.register(_memkd_peak_memory)
'''


@dataclass
class Plan:
    """What each step runs: the full GPU check or the dry CPU one."""

    dry: bool
    device: torch.device
    members: int = 20
    shapes: dict[str, tuple[Shape, int, int, int]] = field(default_factory=dict)  # name -> shape, a, b, repeats
    mm_size: int = 8192
    chapter_profile: str = "paper"
    fig2_profile: str = "paper"
    fig2_overrides: dict = field(default_factory=dict)
    pytest_timeout: int = 240


def make_plan(dry: bool) -> Plan:
    if dry:
        smoke = replace(SHAPES["smoke"], samples=60)
        return Plan(
            dry=True,
            device=torch.device("cpu"),
            members=4,
            shapes={"smoke": (smoke, 1, 3, 1)},
            mm_size=512,
            chapter_profile="smoke",
            fig2_profile="smoke",
            fig2_overrides=dict(teachers=1, students=2, epochs=20, device="cpu"),
            pytest_timeout=120,
        )
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run with --dry for the CPU check.")
    return Plan(
        dry=False,
        device=torch.device("cuda"),
        shapes={
            "smoke": (SHAPES["smoke"], 5, 205, 3),
            "quick": (SHAPES["quick"], 5, 105, 3),
            "paper": (SHAPES["paper"], 5, 45, 3),
        },
        fig2_overrides=dict(alphas=[0.6], student_widths=[500], device="cuda"),
    )


class Table:
    """Rows (step, item, result, seconds), printed and written to `path` after every step."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.header, self.rows = path, header, []
        self.data: dict = {"header": header, "steps": {}}

    def add(self, step: str, item: str, result: str, seconds: float | None = None) -> None:
        self.rows.append((step, item, result, "" if seconds is None else f"{seconds:.1f}"))

    def render(self) -> str:
        order = {"1 tests": 0, "2 speed": 1, "3 chapter 02": 2, "4 tf32": 3}
        rows = sorted(self.rows, key=lambda r: order.get(r[0], 9))  # stable: steps in their own order
        lines = [*self.header, "", "| step | what | result | wall s |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(r)} |" for r in rows]
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.render())
        self.path.with_suffix(".json").write_text(json.dumps(self.data, indent=2, default=str))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- step 1: the cuda tests -----------------------------------------------------------------------


def step_tests(plan: Plan, table: Table, timeout: float) -> None:
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests", "-q", "-p", "no:cacheprovider", "-rfEs"]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out, status = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired:
        out, status = "", None
    seconds = time.perf_counter() - start
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", out)}
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "skipped"))
    if counts.get("error") or counts.get("errors"):
        summary += f", {counts.get('error', 0) + counts.get('errors', 0)} errors"
    verdict = "timed out" if status is None else ("ok" if status in (0, 5) else f"exit {status}")
    table.add("1 tests", "`pytest -m cuda tests`", f"{summary} ({verdict})", seconds)
    failed = [line.strip() for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    for line in failed[:8]:
        table.add("1 tests", "failure", line.replace("|", "/")[:160])
    table.data["steps"]["tests"] = {
        "counts": counts,
        "status": status,
        "seconds": seconds,
        "failed": failed,
        "tail": out[-3000:],
    }


# --- step 2: ensemble against the per-seed loop ------------------------------------------------------


def run_ensemble(x: torch.Tensor, probs: torch.Tensor, shape: Shape, members: int, epochs: int) -> torch.Tensor:
    model, _ = train_students(
        x,
        probs,
        kind="soft",
        classes=shape.classes,
        width=shape.width,
        members=members,
        lrs=LR,
        epochs=epochs,
        temperatures=TEMPERATURE,
        hidden_layers=HIDDEN_LAYERS,
        seed=0,
    )
    with torch.no_grad():
        return model(x)


def seconds_per_epoch(train, a: int, b: int, repeats: int, device: torch.device) -> float:
    """Median over `repeats` of (time of train(b) - time of train(a)) / (b - a), after a warm-up.

    Both runs pay the one-off costs (models, the CUDA graph's capture after 3 epochs, the
    final logits), so the difference is the cost of one more epoch.
    """
    train(a)
    sync(device)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train(b)
        sync(device)
        t1 = time.perf_counter()
        train(a)
        sync(device)
        t2 = time.perf_counter()
        samples.append(((t1 - t0) - (t2 - t1)) / (b - a))
    return statistics.median(samples)


def matmul_rate(device: torch.device, n: int, repeats: int = 5) -> float:
    """GFLOP/s of an (n x n) @ (n x n) fp32 torch.mm on `device` (TF32 off), median after a warm-up."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def step_speed(plan: Plan, table: Table) -> None:
    device, e = plan.device, plan.members
    start = time.perf_counter()
    mm = matmul_rate(device, plan.mm_size)
    table.add(
        "2 speed", f"fp32 `torch.mm` {plan.mm_size}x{plan.mm_size}", f"{mm:,.0f} GFLOP/s", time.perf_counter() - start
    )
    results = {"mm_gflops": mm, "shapes": {}}
    for name, (shape, a, b, repeats) in plan.shapes.items():
        start = time.perf_counter()
        x, probs = make_data(shape)
        x, probs = x.to(device), probs.to(device)
        t = {
            label: seconds_per_epoch(lambda k, fn=fn: fn(x, probs, shape, e, k), a, b, repeats, device)
            for label, fn in (("loop", run_loop), ("ensemble", run_ensemble))
        }
        gflops = 3 * forward_flops(shape, e) / t["ensemble"] / 1e9
        ratio = t["loop"] / t["ensemble"]
        table.add(
            "2 speed",
            f"{name}: N={shape.samples}, D={shape.input_dim}, P={shape.width}, C={shape.classes}, "
            f"E={e}, {b - a} epochs x {repeats}",
            f"loop {t['loop'] * 1e3:.3f} ms/epoch, ensemble {t['ensemble'] * 1e3:.3f} ms/epoch: "
            f"**{ratio:.1f}x**; {gflops:,.0f} GFLOP/s = **{gflops / mm:.0%} of torch.mm**",
            time.perf_counter() - start,
        )
        results["shapes"][name] = {**t, "ratio": ratio, "gflops": gflops, "fraction_of_mm": gflops / mm}
    table.data["steps"]["speed"] = results


# --- step 3: chapter 02 under papermill ---------------------------------------------------------------


def poll_device_memory(device: torch.device, stop: threading.Event, peak: list[int]) -> None:
    """Device-wide memory in use (all processes), the highest seen, every 0.2 s until `stop`."""
    while not stop.is_set():
        free, total = torch.cuda.mem_get_info(device)
        peak[0] = max(peak[0], total - free)
        stop.wait(0.2)


def step_chapter(plan: Plan, table: Table, out_dir: Path, timeout: float) -> None:
    work = out_dir / f"chapter02_{plan.chapter_profile}"
    results_dir, hook_dir, peak_dir = work / "results", work / "hook", work / "peak"
    for d in (results_dir, hook_dir, peak_dir):
        d.mkdir(parents=True, exist_ok=True)
    for f in peak_dir.glob("peak-*.json"):
        f.unlink()
    (hook_dir / "sitecustomize.py").write_text(PEAK_HOOK)
    env = {
        **os.environ,
        "MEMKD_PEAK_MEMORY_DIR": str(peak_dir),
        "PYTHONPATH": os.pathsep.join([str(hook_dir), str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    }
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(CHAPTER),
        str(work / "02_executed.ipynb"),
        "--kernel",
        "python3",
        "--cwd",
        str(CHAPTER.parent),
        "--execution-timeout",
        str(int(max(30, timeout))),
        "-p",
        "profile",
        plan.chapter_profile,
        "-p",
        "results_dir",
        str(results_dir),
    ]
    if not plan.dry:
        cmd += ["-p", "device", "cuda"]
    polled, stop = [0], threading.Event()
    baseline = 0
    if plan.device.type == "cuda":
        free, total = torch.cuda.mem_get_info(plan.device)
        baseline = total - free
        threading.Thread(target=poll_device_memory, args=(plan.device, stop, polled), daemon=True).start()
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 30)
        status, tail = done.returncode, (done.stdout + done.stderr)[-3000:]
    except subprocess.TimeoutExpired:
        status, tail = None, "timed out"
    seconds = time.perf_counter() - start
    stop.set()
    meta_path = results_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() and status == 0 else {}
    peaks = [json.loads(f.read_text()) for f in peak_dir.glob("peak-*.json")]
    allocated = max((p["max_memory_allocated"] for p in peaks), default=None)
    reserved = max((p["max_memory_reserved"] for p in peaks), default=None)
    verdict = "ok" if status == 0 else ("timed out" if status is None else f"failed (exit {status})")
    if status not in (0, None):  # the error the chapter stopped on
        errors = [line for line in tail.splitlines() if re.match(r"^\w+(Error|Exception|Interrupt)\b", line)]
        verdict += f": {errors[-1][:150]}".replace("|", "/") if errors else ""
    table.add(
        "3 chapter 02",
        f"profile={plan.chapter_profile} under papermill on {plan.device.type}",
        f"{verdict}; the chapter's own time {meta.get('elapsed_s', 'n/a')} s",
        seconds,
    )
    if plan.device.type == "cuda":
        gib = lambda b: "n/a" if b is None else f"{b / 2**30:.2f} GiB"  # noqa: E731
        table.add(
            "3 chapter 02",
            "peak GPU memory",
            f"max_memory_allocated {gib(allocated)}, reserved {gib(reserved)}; device memory in use "
            f"(polled, less the {gib(baseline)} in use before) {gib(polled[0] - baseline)}",
        )
    else:
        table.add("3 chapter 02", "peak GPU memory", "n/a on cpu")
    claims_path = results_dir / "claims.csv"
    if claims_path.exists() and status == 0:
        import pandas as pd

        claims = pd.read_csv(claims_path)
        if "verdict" in claims:
            counts = claims["verdict"].astype(str).value_counts()
            table.add("3 chapter 02", f"{len(claims)} claims", ", ".join(f"{n} {v}" for v, n in counts.items()))
        elif "holds" in claims:
            holds = claims["holds"].astype(str).str.lower().isin(["true", "1"])
            table.add("3 chapter 02", "claims", f"{int(holds.sum())} of {len(claims)} hold")
    table.data["steps"]["chapter"] = {
        "status": status,
        "seconds": seconds,
        "meta": meta,
        "peaks": peaks,
        "polled_peak": polled[0],
        "baseline": baseline,
        "tail": tail if status != 0 else "",
    }


# --- step 4: TF32 against fp32 ------------------------------------------------------------------------


def step_tf32(plan: Plan, table: Table) -> None:
    from memkd import experiments as ex
    from memkd.distillation import TeacherDidNotMemorize

    runs = {}
    for enabled in (False, True):
        before = set_tf32(enabled)
        start = time.perf_counter()
        try:
            runs[enabled] = (ex.logit_distillation(plan.fig2_profile, **plan.fig2_overrides), None)
        except TeacherDidNotMemorize as err:
            runs[enabled] = (None, str(err).split(".")[0])
        finally:
            sync(plan.device)
            set_tf32(before)
        runs[enabled] += (time.perf_counter() - start,)
    (fp32, fp32_err, fp32_s), (tf32, tf32_err, tf32_s) = runs[False], runs[True]
    what = f"Fig 2, profile={plan.fig2_profile} " + ", ".join(
        f"{k}={v}" for k, v in plan.fig2_overrides.items() if k != "device"
    )
    result = {"fp32_s": fp32_s, "tf32_s": tf32_s}
    if fp32 is None or tf32 is None:
        table.add("4 tf32", what, f"fp32: {fp32_err or 'ok'}; tf32: {tf32_err or 'ok'}", fp32_s + tf32_s)
    else:
        for metric in ("test_acc", "independent_acc"):
            diff = torch.tensor(tf32[metric].values - fp32[metric].values, dtype=torch.float64)
            sem = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
            label = "held-out accuracy (test_acc)" if metric == "test_acc" else "accuracy on fresh data D'"
            table.add(
                "4 tf32",
                f"{what}: {label}, {len(diff)} students",
                f"fp32 {fp32[metric].mean():.4f}, tf32 {tf32[metric].mean():.4f}: difference "
                f"**{float(diff.mean()):+.4f}** +- {sem:.4f} (paired SEM), largest single difference {float(diff.abs().max()):.4f}",
            )
            result[metric] = {
                "fp32": float(fp32[metric].mean()),
                "tf32": float(tf32[metric].mean()),
                "diff": float(diff.mean()),
                "sem": sem,
            }
        table.add(
            "4 tf32",
            "wall time",
            f"fp32 {fp32_s:.1f} s, tf32 {tf32_s:.1f} s"
            + ("" if plan.device.type == "cuda" else " (TF32 does not exist on a CPU: the runs are identical)"),
            fp32_s + tf32_s,
        )
    table.data["steps"]["tf32"] = result


# --- main -------------------------------------------------------------------------------------------


def header(plan: Plan) -> list[str]:
    from memkd.provenance import collect

    info = collect(plan.device)
    gpu = torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else "no GPU (dry run)"
    cuda = f", CUDA {torch.version.cuda}" if plan.device.type == "cuda" else ""
    return [
        f"# memkd gpu_check{' --dry' if plan.dry else ''}: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{gpu} ({info.get('device_name')}), torch {torch.__version__}{cuda}, "
        f"commit {str(info.get('git_commit'))[:12]}{'' if info.get('git_clean') else ' (uncommitted changes)'}, "
        f"TF32 {'on' if tf32_enabled() else 'off'} outside step 4",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="the same steps on the CPU at tiny sizes")
    parser.add_argument(
        "--out",
        default=None,
        help="the table's file (default $OUT/gpu_check.md, else "
        "_build/gpu_check/gpu_check.md); a .json with every number lies beside it",
    )
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all steps (default 450)")
    parser.add_argument("--steps", default="1,2,3,4", help="which steps to run, e.g. 1,2,4")
    args = parser.parse_args(argv)
    steps = {s.strip() for s in args.steps.split(",") if s.strip()}
    if not steps or not steps <= {"1", "2", "3", "4"}:
        raise ValueError(f"gpu_check: --steps must list some of 1, 2, 3, 4. Got {args.steps!r} instead.")
    if args.budget <= 0:
        raise ValueError(f"gpu_check: --budget must be a number of seconds > 0. Got {args.budget} instead.")
    default_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "_build" / "gpu_check"
    out = Path(args.out) if args.out else default_dir / "gpu_check.md"
    plan = make_plan(args.dry)
    set_tf32(False)  # every step but the TF32 comparison in full fp32
    started = time.perf_counter()
    table = Table(out, header(plan))
    left = lambda: args.budget - (time.perf_counter() - started)  # noqa: E731
    runners = [
        ("1", "1 tests", lambda: step_tests(plan, table, min(plan.pytest_timeout, max(30.0, left())))),
        ("2", "2 speed", lambda: step_speed(plan, table)),
        ("4", "4 tf32", lambda: step_tf32(plan, table)),
        ("3", "3 chapter 02", lambda: step_chapter(plan, table, out.parent, max(60.0, left()))),
    ]
    ok = True
    for key, name, run in runners:
        if key not in steps:
            continue
        try:
            run()
        except Exception as err:  # one broken step must not hide the others
            ok = False
            table.add(name, "error", f"{type(err).__name__}: {str(err)[:200]}".replace("|", "/"))
        table.save()
    done = table.data["steps"]
    ok = ok and done.get("tests", {}).get("status", 0) in (0, 5) and done.get("chapter", {}).get("status", 0) == 0
    table.add(
        "total",
        "all steps",
        f"{'ok' if ok else 'SOMETHING FAILED'}; budget {args.budget:.0f} s",
        time.perf_counter() - started,
    )
    table.save()
    print(table.render(), end="")
    print(f"\n(written to {out} and {out.with_suffix('.json')})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
