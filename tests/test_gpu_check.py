"""benchmarks/gpu_check.sh --dry: the GPU check's every step, on the CPU at tiny sizes, so it cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_runs_every_step_and_writes_its_table(tmp_path):
    out = tmp_path / "gpu_check.md"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = out.read_text()
    assert table in done.stdout  # what it prints is what it records
    for step in (
        "| 1 tests | `pytest -m cuda tests` | 0 passed, 0 failed",
        "| 2 speed | smoke:",
        "| 3 chapter 02 | profile=smoke under papermill on cpu | ok",
        "| 4 tf32 |",
        "| total | all steps | ok",
    ):
        assert step in table, f"missing {step!r} in\n{table}"
    numbers = json.loads(out.with_suffix(".json").read_text())["steps"]
    assert numbers["speed"]["shapes"]["smoke"]["loop"] > 0 and numbers["speed"]["mm_gflops"] > 0
    assert numbers["chapter"]["meta"]["profile"] == "smoke"
    assert numbers["tf32"]["test_acc"]["diff"] == 0.0  # TF32 does not exist on a CPU


def test_gpu_check_refuses_unknown_steps():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    with pytest.raises(ValueError, match="--steps must list some of 1, 2, 3, 4"):
        gpu_check.main(["--dry", "--steps", "5"])


def test_flop_estimates_count_three_forward_passes_per_epoch():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import flop_estimates
        from ensemble_speed import SHAPES, forward_flops
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    paper = SHAPES["paper"]
    call = flop_estimates.Call("soft", 20, paper.samples, (paper.input_dim, paper.width, paper.width, paper.classes), 7)
    assert call.flops == 7 * 3 * forward_flops(paper, 20)
    calls = []
    from memkd import experiments as ex

    with flop_estimates.recording(calls):
        ex.logit_distillation("smoke", teachers=1, device="cpu")
    smoke = ex.logit_distillation.config.PROFILE_VALUES["smoke"]
    n = smoke["classes"] * smoke["per_class"]
    teacher, students = calls  # nothing trained: one teacher call and one student ensemble, recorded
    assert (teacher.what, teacher.samples, teacher.epochs) == ("teacher", n, smoke["teacher_epochs"])
    assert (students.what, students.members, students.epochs) == ("soft", smoke["students"], smoke["epochs"])
    assert students.samples == round(smoke["alphas"][0] * smoke["per_class"]) * smoke["classes"]


def test_flop_estimates_follow_the_experiments_signatures():
    """The stand-ins take every training call the chapters make: a renamed knob or a new keyword of
    train_students shows here as a TypeError or AttributeError instead of silently dropping a chapter."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import flop_estimates
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert set(flop_estimates.linear_calls()) == {"11_linear_recovery", "12_temperature_window"}
    calls = []
    from memkd import experiments as ex

    with flop_estimates.recording(calls):
        ex.toy_2d("smoke", device="cpu")
    assert {c.what for c in calls} >= {"teacher"} and len(calls) >= 2
