"""Chapter 14 (defences against the leak and what they cost): its departures.

The experiment (`memkd.experiments.defence_frontier`) and `memkd.book.frontier` give the frontier and its
claims. This module lists how the chapter's settings depart from the paper's (`departures`).
"""

from __future__ import annotations

import pandas as pd

from memkd.book.departures import Departure, config_of, departure_row


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 14's departures: its settings' sizes, who owns the temperature, the completion of
    withheld mass, the linear student and its baseline, and the recovery cell's split."""
    from memkd.experiments.defence_frontier import RECOVERY_CELL

    c = config_of(table)
    cell = RECOVERY_CELL.get(c.get("profile", "quick"), RECOVERY_CELL["quick"])
    spread = {"uniform": "uniformly over the withheld classes", "renormalize": "nowhere: the k returned entries are "
              "renormalized"}[c.get("withheld", "uniform")]
    return [departure_row("14_defences", "settings", **c, cell_dim=cell["input_dim"], cell_classes=cell["classes"],
                          cell_per_class=cell["per_class"], cell_teachers=cell["teachers"], cell_epochs=cell["epochs"],
                          cell_lr=cell["lrs"][0]),
            departure_row("14_defences", "server temperature", temperature=c["temperatures"][0]),
            departure_row("14_defences", "withheld mass", withheld=spread),
            departure_row("14_defences", "linear student", linear_temperature=c["linear_temperature"],
                          probes=", ".join(f"{t:g}" for t in c.get("linear_probe_temperatures", [])) or "none"),
            departure_row("14_defences", "linear leak baseline"),
            departure_row("14_defences", "recovery cell split", cell_alpha=cell["alphas"][0])]
