"""Chapter 15 (GPT-2 and random facts): its departures.

The experiment (`memkd.experiments.language_model`) returns one row per student; the claims and their
sentences are in the notebook. This module lists how a run departs from the released GPT-2 notebook
(`departures`, against `language_model.RELEASED`).
"""

from __future__ import annotations

import pandas as pd

from memkd.book.departures import Departure, config_of, departure_row


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 15: the departures from the released GPT-2 notebook (`language_model.RELEASED`) that a
    run's config implies."""
    from memkd.experiments.language_model import RELEASED as GPT2_RELEASED

    r, c = GPT2_RELEASED, config_of(table)
    out = [departure_row("15_language_model", "teachers and split", teachers=c["teachers"])]
    if c["checkpoint"] != r["checkpoint"]:
        out.append(departure_row("15_language_model", "model from scratch", **{**c, "cells": ", ".join(c["cells"]),
                                 "widths": ", ".join(map(str, c["widths"]))}))
    if (c["triples"], c["classes"], c["balanced"]) != (r["triples"], r["classes"], r["balanced"]):
        out.append(departure_row("15_language_model", "task sizes", **c))
    if (c["teacher_lr"], c["teacher_epochs"]) != (r["teacher_lr"], r["teacher_epochs"]):
        out.append(departure_row("15_language_model", "teacher budget", **c))
    if (c["lr"], c["epochs"]) != (r["lr"], r["epochs"]) or tuple(c["rhos"]) != r["rhos"]:
        out.append(departure_row("15_language_model", "student budget", rho_list=", ".join(map(str, c["rhos"])), **c))
    return out + [departure_row("15_language_model", "teacher bar", **c),
                  departure_row("15_language_model", "fresh triples"),
                  departure_row("15_language_model", "shared batches")]
