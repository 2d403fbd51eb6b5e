"""Chapter 15 (GPT-2 and random facts): its claims and departures.

The experiment (`memkd.experiments.language_model`) returns one row per student (and rows for teachers
that trained no student, `student` < 0); this module records the chapter's claims on it: the released
notebook's leak in the cell and start closest to its own (`released_cell`, `released_start`,
`leak_claim`) and the question's claims on the start, the tokenization and how often numbers recur
(`question_claims`, in the report's block of the book's own questions). The power plans are in plans.yml.
It also writes the closing note from the verdicts (`closing_note`) and lists how a run departs from the
released GPT-2 notebook (`departures`, against `language_model.RELEASED`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from memkd import experiments as ex
from memkd.book.departures import Departure, config_of, departure_row
from memkd.book.outcomes import outcome

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


def released_cell(config: dict) -> str:
    """Chapter 15: the cell of a run's `config` closest to the released task: the checkpoint's tokenizer, else
    one token a number, from the narrowest range (numbers recur); else the run's first cell."""
    numbered = sorted((int(c.split("/")[1]), c) for c in config["cells"] if c.split("/")[0] in ("gpt2", "number"))
    return numbered[0][1] if numbered else config["cells"][0]


def released_start(config: dict) -> str:
    """Chapter 15: the student start closest to the released one: the teacher's body if the run has it, else
    the run's first start."""
    return "teacher_body" if "teacher_body" in config["student_starts"] else config["student_starts"][0]


def student_rows(table: pd.DataFrame, cell: str, start: str) -> pd.DataFrame:
    """Chapter 15: the students of `table` of one `cell` and `start` at the largest fraction rho of the run
    (every claim is tested there)."""
    rho = max(table.attrs["config"]["rhos"])
    students = table[table.student >= 0]
    return students[(students.cell == cell) & (students.student_start == start) & (students.rho == rho)]


def leak_claim(ch: "Chapter", table: pd.DataFrame) -> str:
    """Record the released notebook's claim on `ch` (a `memkd.book.chapter.Chapter`) and return its sentence
    (Markdown): in `released_cell` with `released_start` at the largest rho, the students' held-out accuracy
    beats their own accuracy on fresh triples (`independent_acc`; one-sided, teachers as the unit)."""
    ch.rest_on(table)
    cfg = table.attrs["config"]
    cell, start, rho = released_cell(cfg), released_start(cfg), max(cfg["rhos"])
    return ch.claim(
        "leak_beats_fresh",
        "Students distilled from a GPT-2 teacher's soft labels classify its "
        "held-out random facts better than fresh ones.",
        student_rows(table, cell, start),
        baseline="independent_acc",
        expect="above",
        unit="dataset",
        what=f"held-out accuracy ({cell}, {start}, rho = {rho:g})",
    )


def question_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Record the question's claims on `ch`, in the block of the book's own questions (`beyond_paper`), and
    return their sentences (Markdown). Each compares the leak (`leak`) at the largest rho, paired on teachers,
    one-sided: (1) in each cell that compares starts (`student_start_cells`, else every cell), students from
    the teacher's start leak more than independently started ones; (2) digit pieces leak more than one token
    a number in the same range; (3) the narrowest range (numbers recur) leaks more than the widest. (2) and
    (3) with the independently started students (else the run's last start)."""
    ch.rest_on(table)
    cfg = table.attrs["config"]
    shared = [s for s in ("teacher_start", "teacher_body") if s in cfg["student_starts"]]
    base_start = "independent" if "independent" in cfg["student_starts"] else cfg["student_starts"][-1]
    out = []
    with ch.section(beyond_paper=True):
        for cell in (cfg["student_start_cells"] or cfg["cells"]) if shared and base_start == "independent" else []:
            name = cell.replace("/", "")
            out.append(
                ch.claim_difference(
                    f"shared_start_leaks_more_{name}",
                    f"In {cell}, students that start from "
                    f"their teacher's initial weights ({shared[0]}) leak more than independently started ones.",
                    student_rows(table, cell, shared[0]),
                    student_rows(table, cell, "independent"),
                    value="leak",
                    expect="above",
                    what=f"leak, {shared[0]} against independent ({cell})",
                )
            )
        for cell in [c for c in cfg["cells"] if c.startswith("digits/")]:
            twin = "number/" + cell.split("/")[1]
            if twin in cfg["cells"]:
                out.append(
                    ch.claim_difference(
                        f"digits_leak_more_{cell.split('/')[1]}",
                        "Numbers cut into digit pieces leak more than numbers that are one token each.",
                        student_rows(table, cell, base_start),
                        student_rows(table, twin, base_start),
                        value="leak",
                        expect="above",
                        what=f"leak, {cell} against {twin}",
                    )
                )
        ranges = sorted((int(c.split("/")[1]), c) for c in cfg["cells"] if c.startswith("number/"))
        if len(ranges) >= 2:
            out.append(
                ch.claim_difference(
                    "recurring_numbers_leak_more",
                    "Facts whose numbers recur across triples leak more than facts built from rarely repeated numbers.",
                    student_rows(table, ranges[0][1], base_start),
                    student_rows(table, ranges[-1][1], base_start),
                    value="leak",
                    expect="above",
                    what=f"leak, {ranges[0][1]} against {ranges[-1][1]}",
                )
            )
    return out


def closing_note(ch: "Chapter", table: pd.DataFrame, claims: pd.DataFrame, seconds: float) -> str:
    """Chapter 15's closing note (Markdown), computed from the run: how many students and teachers and how long
    (`seconds`), every claim of `claims` (what `ch.finish()` returned) with its verdict and, where this run has
    fewer teachers than planned, the planned number; then what the verdicts of the leak, the recurring numbers
    and the shared start in `released_cell` say, and which undecided claims are underpowered here."""
    short = claims[(claims.planned_n > claims.n) & (claims.verdict != "holds")]
    paper_n = ex.language_model.config.PROFILE_VALUES["paper"]["teachers"]
    lines = [
        f"- {c.paper} **{c.verdict}** (n = {c.n} teachers"
        + (f"; planned {c.planned_n:.0f}" if c.planned_n > c.n else "")
        + ")"
        for c in claims.itertuples()
    ]
    cell = released_cell(table.attrs["config"])
    notes = [
        outcome(
            ch,
            "leak_beats_fresh",
            "The released notebook's effect is there at this scale: the students "
            "classify held-out facts above what they score on fresh ones ({difference:+.3f}).",
            "At this scale the students do not leak beyond their fresh accuracy.",
            "At this scale the leak is not decided ({interval}).",
            missing="The leak was not tested.",
        ),
        outcome(
            ch,
            "recurring_numbers_leak_more",
            "How often a number recurs across the facts matters: "
            "triples of recurring numbers leak more than triples of rare ones ({difference:+.3f} in leak).",
            "Recurring numbers do not leak more here ({difference:+.3f}).",
            "Whether recurring numbers leak more is not decided here ({interval}).",
            missing="",
        ),
        outcome(
            ch,
            f"shared_start_leaks_more_{cell.replace('/', '')}",
            "A shared start adds to the leak ({difference:+.3f}).",
            "A shared start does not add to the leak here ({difference:+.3f}).",
            "Whether a shared start adds to the leak is not decided here ({interval}).",
            missing="",
        ),
    ]
    if len(short):
        notes.append(
            f"Undecided and underpowered here ({', '.join(short.claim)}): the spread of this run asks for "
            f"more teachers than it has; the paper profile trains {paper_n} teachers at the released sizes "
            "(their own spread sets its plan), and `teachers` raises the number at any profile."
        )
    students = table[table.student >= 0]
    return (
        f"{len(students)} students of {table.dataset.nunique()} teachers, run time {seconds:.0f} s on "
        f"{ch.device}.\n\n" + "\n".join(lines) + "\n\n" + " ".join(notes)
    )


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 15: the departures from the released GPT-2 notebook (`language_model.RELEASED`) that a
    run's config implies."""
    from memkd.experiments.language_model import RELEASED as GPT2_RELEASED

    r, c = GPT2_RELEASED, config_of(table)
    out = [departure_row("15_language_model", "teachers and split", teachers=c["teachers"])]
    if c["checkpoint"] != r["checkpoint"]:
        out.append(
            departure_row(
                "15_language_model",
                "model from scratch",
                **{**c, "cells": ", ".join(c["cells"]), "widths": ", ".join(map(str, c["widths"]))},
            )
        )
    if (c["triples"], c["classes"], c["balanced"]) != (r["triples"], r["classes"], r["balanced"]):
        out.append(departure_row("15_language_model", "task sizes", **c))
    if (c["teacher_lr"], c["teacher_epochs"]) != (r["teacher_lr"], r["teacher_epochs"]):
        out.append(departure_row("15_language_model", "teacher budget", **c))
    if (c["lr"], c["epochs"]) != (r["lr"], r["epochs"]) or tuple(c["rhos"]) != r["rhos"]:
        out.append(departure_row("15_language_model", "student budget", rho_list=", ".join(map(str, c["rhos"])), **c))
    return out + [
        departure_row("15_language_model", "teacher bar", **c),
        departure_row("15_language_model", "fresh triples"),
        departure_row("15_language_model", "shared batches"),
    ]
