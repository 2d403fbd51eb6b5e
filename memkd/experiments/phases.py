"""The phases of the published version's one-hidden-layer network, and where recovery starts.

Shape letters (see `memkd`): D input dim, P hidden width, C classes, N = C * n samples of D.
Owns the thresholds that name a phase (fixed before any run, each with its reason), the counting
bound, the per-cell phase map, the recovery boundary and the choice of the tested cells on one half
of the teachers. Nothing here trains: `memkd.experiments.one_hidden_layer` produces the rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PHASES = ("partial leak", "approximate fit", "recovery", "teacher fails")

# A student "fits its points" when it classifies at least 99% of its own soft-labelled points like
# the teacher: the published phase diagram separates students that memorize their part from those
# that fit it only approximately, and one miss in a hundred leaves room for float ties, not more.
FIT_MIN = 0.99
# "Recovers the teacher" means the published criterion, (near) 100% on the held-out memorized points,
# with the same one-in-a-hundred slack as FIT_MIN ...
RECOVERY_HELD_OUT_MIN = 0.99
# ... and agreement with the teacher on fresh inputs, which a leak from memorized points alone does not
# give. Fresh inputs lie closer to the teacher's decision boundaries than its memorized points (with
# C = 100 many have a small top-2 margin), so a close functional copy still flips a few: 0.9 asks
# for 90 times chance at C = 100 and leaves that slack.
RECOVERY_FRESH_MIN = 0.9
# A cell's teacher memorized when at least half of its teachers reached 100% on D: beyond the
# teacher's capacity most teachers fail, and a cell's phase describes students of memorizing teachers.
TEACHER_MEMORIZED_SHARE = 0.5
# The partial-leak cell for the surgery: the one whose held-out accuracy lies closest to this, a
# clear leak far from both chance and recovery, so that a surgery can move it either way.
PARTIAL_LEAK_TARGET = 0.5


def parameter_count(input_dim: int, width: int, classes: int) -> int:
    """Weights and biases of D -> P -> C with biases: P (D + 1) + C (P + 1).

    The softmax ignores a shift shared by all classes (P + 1 directions) and a ReLU unit can be
    rescaled (P more), so the identifiable count is a little lower: the bound below is generous.
    """
    return width * (input_dim + 1) + classes * (width + 1)


def counting_bound(input_dim: int, width: int, classes: int) -> float:
    """n*: the student points whose soft labels give as many equations as the network has parameters.

    Each soft label fixes the C - 1 logit differences of its point: rho N (C - 1) equations against
    `parameter_count` unknowns. Necessary for recovery, not sufficient (the equations are non-linear
    and the optimizer must find the solution).
    """
    return parameter_count(input_dim, width, classes) / (classes - 1)


def classify_phase(teacher_train_acc: float, train_acc: float, test_acc: float, agreement_fresh: float) -> str:
    """The phase of one student (or of one cell's means), from the thresholds above.

    teacher fails: the teacher is below 100% on D (or no student was trained, NaN);
    recovery: held-out >= RECOVERY_HELD_OUT_MIN and fresh agreement >= RECOVERY_FRESH_MIN;
    approximate fit: otherwise, when the student fits fewer than FIT_MIN of its own points;
    partial leak: the student fits its points, and the held-out points are not recovered.
    """
    if not teacher_train_acc >= 1.0 or any(math.isnan(v) for v in (train_acc, test_acc, agreement_fresh)):
        return "teacher fails"
    if test_acc >= RECOVERY_HELD_OUT_MIN and agreement_fresh >= RECOVERY_FRESH_MIN:
        return "recovery"
    if train_acc < FIT_MIN:
        return "approximate fit"
    return "partial leak"


CELL = ["input_dim", "classes", "width", "per_class", "n_memorized", "rho", "n_student", "temperature"]
MEASURES = ["train_acc", "test_acc", "agreement_fresh"]


def phase_map(table: pd.DataFrame, datasets=None) -> pd.DataFrame:
    """One row per cell (D, C, P, n, rho, T) of the unshuffled students (`datasets`: only these teachers).

    Students are averaged within a teacher first, then teachers within the cell. Columns: the cell's
    knobs, teachers, memorized (teachers at 100%), students (per memorized teacher), the three
    measures over memorized teachers, teacher_train_acc over all teachers, bound (n*), bound_ratio
    (n_student / n*) and phase (`classify_phase` of the means; "teacher fails" when fewer than
    TEACHER_MEMORIZED_SHARE of the teachers memorized).
    """
    rows = table[~table["shuffled"].astype(bool)]
    if datasets is not None:
        rows = rows[rows["dataset"].isin(list(datasets))]
    teachers = (
        rows.groupby(CELL + ["dataset"], dropna=False)
        .agg(
            teacher_train_acc=("teacher_train_acc", "mean"),
            students=("student", "count"),
            **{m: (m, "mean") for m in MEASURES},
        )
        .reset_index()
    )
    teachers["memorized"] = teachers["teacher_train_acc"] >= 1.0
    out = []
    for key, part in teachers.groupby(CELL, dropna=False, sort=True):
        good = part[part["memorized"]]
        cell = dict(
            zip(CELL, key),
            teachers=len(part),
            memorized=len(good),
            students=int(good["students"].min()) if len(good) else 0,
            teacher_train_acc=float(part["teacher_train_acc"].mean()),
            **{m: float(good[m].mean()) if len(good) else math.nan for m in MEASURES},
        )
        ok = len(good) >= TEACHER_MEMORIZED_SHARE * len(part) and len(good) > 0
        cell["phase"] = (
            classify_phase(1.0, cell["train_acc"], cell["test_acc"], cell["agreement_fresh"]) if ok else "teacher fails"
        )
        out.append(cell)
    cells = pd.DataFrame(out)
    cells["bound"] = [
        counting_bound(int(d), int(w), int(c)) for d, w, c in zip(cells["input_dim"], cells["width"], cells["classes"])
    ]
    cells["bound_ratio"] = cells["n_student"] / cells["bound"]
    return cells


def recovery_boundary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (C, P, T): the fewest student points of a recovery cell, n*, and their ratio (NaN if none).

    Columns: classes, width, temperature, boundary (n_student of the smallest recovery cell), bound,
    factor (boundary / bound), largest_below (the most student points of a cell that fits its
    points but does not recover: partial leak), recovery_cells.
    """
    out = []
    for (c, w, t), part in cells.groupby(["classes", "width", "temperature"], sort=True):
        rec = part[part["phase"] == "recovery"]
        leak = part[part["phase"] == "partial leak"]
        boundary = float(rec["n_student"].min()) if len(rec) else math.nan
        bound = float(part["bound"].iloc[0])
        out.append(
            dict(
                classes=c,
                width=w,
                temperature=t,
                boundary=boundary,
                bound=bound,
                factor=boundary / bound,
                recovery_cells=len(rec),
                largest_below=float(leak["n_student"].max()) if len(leak) else math.nan,
            )
        )
    return pd.DataFrame(out)


def choose_cells(cells: pd.DataFrame) -> dict[str, dict | None]:
    """The tested cells, chosen on a phase map of the choosing half of the teachers.

    "recovery": the recovery cell with the highest held-out accuracy (ties: the fewest student points);
    without one, the cell closest to recovery (the largest min(test_acc / RECOVERY_HELD_OUT_MIN,
    agreement_fresh / RECOVERY_FRESH_MIN) among the cells whose teachers memorized): the most promising
    cell, whose recovery the other half then tests;
    "partial leak": among the partial-leak cells that meet the counting bound (bound_ratio >= 1), the one
    whose held-out accuracy lies closest to PARTIAL_LEAK_TARGET.
    Each is a dict of the cell's knobs (per_class, rho, classes, width, temperature), or None.
    """
    keys = ["per_class", "rho", "classes", "width", "temperature"]
    out: dict[str, dict | None] = {}
    rec = cells[cells["phase"] == "recovery"].sort_values(["test_acc", "n_student"], ascending=[False, True])
    if not len(rec):
        alive = cells[cells["phase"] != "teacher fails"]
        score = np.minimum(alive["test_acc"] / RECOVERY_HELD_OUT_MIN, alive["agreement_fresh"] / RECOVERY_FRESH_MIN)
        rec = alive.loc[score.sort_values(ascending=False).index[:1]] if len(alive) else alive
    out["recovery"] = {k: rec.iloc[0][k] for k in keys} if len(rec) else None
    leak = cells[(cells["phase"] == "partial leak") & (cells["bound_ratio"] >= 1.0)]
    if len(leak):
        best = leak.iloc[int(np.argmin((leak["test_acc"] - PARTIAL_LEAK_TARGET).abs().to_numpy()))]
        out["partial leak"] = {k: best[k] for k in keys}
    else:
        out["partial leak"] = None
    for cell in out.values():
        if cell is not None:
            cell.update(
                per_class=int(cell["per_class"]),
                classes=int(cell["classes"]),
                width=int(cell["width"]),
                rho=float(cell["rho"]),
                temperature=float(cell["temperature"]),
            )
    return out


def in_cell(table: pd.DataFrame, cell: dict) -> pd.Series:
    """Rows of `table` in `cell` (a dict from `choose_cells`)."""
    mask = pd.Series(True, index=table.index)
    for k, v in cell.items():
        mask &= np.isclose(table[k].astype(float), float(v))
    return mask


def held_out_counts(rows: pd.DataFrame) -> tuple[int, int]:
    """(correct, total) held-out points pooled over `rows` (test_acc * n_held_out per student)."""
    held = (rows["n_memorized"] - rows["n_student"]).astype(float)
    good = rows["test_acc"].notna()
    return int(round(float((rows["test_acc"][good] * held[good]).sum()))), int(held[good].sum())
