"""The book's figure style and the few plots every chapter needs.

Every plot shows mean +- SEM over seeds and, where there is one, the chance level.
"""

from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from memkd.tables import TEACHER_ID

CLASS_COLORS = ["#1f5fa8", "#b8213b", "#e3b505", "#2a9d8f", "#6d597a", "#e76f51"]


def style() -> None:
    """A quiet style for all figures of the book."""
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "font.size": 10,
            "legend.frameon": False,
        }
    )


def errorbar_lines(
    ax,
    table: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    label_fmt: str = "{}",
    unit: str | None = TEACHER_ID,
    **kwargs,
) -> None:
    """Mean +- SEM over teachers (`unit`, as in `memkd.summarize`) of `y` against `x`, one line per
    value of `hue`."""
    from memkd.tables import summarize

    groups = [(None, table)] if hue is None else table.groupby(hue)
    for value, group in groups:
        s = summarize(group, y, by=[x], unit=unit).sort_values(x)
        label = kwargs.pop("label", None) if hue is None else label_fmt.format(value)
        ax.errorbar(s[x], s[y], yerr=s[f"{y}_sem"], marker="o", ms=4, capsize=3, label=label, **kwargs)


def chance_line(ax, chance: float, label: str = "chance") -> None:
    ax.axhline(chance, color="grey", ls=":", lw=1.2, label=label)


def sem_label(sem: float) -> str:
    """A SEM as a cell label with one significant digit, so a small one never reads as 0: '0.004', '0.03'.

    >>> sem_label(0.0042), sem_label(0.031), sem_label(0.0)
    ('0.004', '0.03', '0')
    """
    return "0" if sem == 0 else f"{sem:.1g}"


def heatmap(
    ax,
    pivot: pd.DataFrame,
    fmt: str = "{:.2f}",
    cmap: str = "viridis",
    vmin=None,
    vmax=None,
    annotations: pd.DataFrame | None = None,
    colorbar_label: str = "",
    errors: pd.DataFrame | None = None,
    grey: pd.DataFrame | None = None,
):
    """A heat map of a pivoted table (rows x columns); NaN cells stay blank (white).

    `grey` (booleans, same shape), when given, paints its True cells grey instead of their colour (e.g.
    the cells at or below chance, the paper's "trivial" cells in Fig 6); their numbers stay.

    `annotations` (same shape) supplies the numbers written on the cells (default: the values);
    `errors` (same shape), when given, is written under each number as "±" with one significant
    digit (`sem_label`; e.g. the SEM over teachers). The text is black on pale cells and white on dark ones, so every label stays legible.
    """
    values = pivot.to_numpy(dtype=float)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
    ax.set_xticks(range(pivot.shape[1]), [f"{c:g}" if isinstance(c, float) else str(c) for c in pivot.columns])
    ax.set_yticks(range(pivot.shape[0]), [f"{r:g}" if isinstance(r, float) else str(r) for r in pivot.index])
    ax.grid(False)
    greyed = (
        np.zeros(values.shape, dtype=bool)
        if grey is None
        else grey.reindex_like(pivot).fillna(False).to_numpy(dtype=bool) & ~np.isnan(values)
    )
    if greyed.any():
        ax.imshow(
            np.ma.masked_where(~greyed, np.ones(values.shape)),
            cmap=ListedColormap(["#c8c8c8"]),
            aspect="auto",
            origin="lower",
        )
    notes = values if annotations is None else annotations.to_numpy(dtype=float)
    spread = None if errors is None else errors.reindex_like(pivot).to_numpy(dtype=float)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(notes[i, j]) and not np.isnan(values[i, j]):
                r, g, b, _ = im.cmap(im.norm(values[i, j]))
                colour = "black" if greyed[i, j] or 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                text = fmt.format(notes[i, j])
                if spread is not None and not np.isnan(spread[i, j]):
                    text += "\n±" + sem_label(spread[i, j])
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8 if spread is None else 7)
    cbar = ax.figure.colorbar(im, ax=ax, shrink=0.85)
    cbar.set_label(colorbar_label)
    return im


def decision_regions(
    ax,
    regions: np.ndarray,
    extent,
    x: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    test_correct: np.ndarray | None = None,
    title: str = "",
) -> None:
    """Predicted class over the plane, the student's points as class-coloured dots, and the
    held-out points with a green ring (right) or a black ring and cross (wrong) when `test_correct` is
    given (black, not red: red is a class colour)."""
    classes = int(max(regions.max(), y.max())) + 1
    cmap = ListedColormap(CLASS_COLORS[:classes])
    ax.imshow(
        regions,
        extent=extent,
        origin="lower",
        cmap=cmap,
        alpha=0.3,
        vmin=0,
        vmax=classes - 1,
        interpolation="nearest",
        aspect="auto",
    )
    ax.scatter(
        x[train_idx, 0], x[train_idx, 1], c=[CLASS_COLORS[c] for c in y[train_idx]], s=22, edgecolor="k", linewidth=0.4
    )
    if test_correct is None:
        ax.scatter(
            x[test_idx, 0], x[test_idx, 1], c=[CLASS_COLORS[c] for c in y[test_idx]], s=22, edgecolor="k", linewidth=0.4
        )
    else:
        colors = np.where(test_correct, "#2b9348", "#000000")
        ax.scatter(
            x[test_idx, 0],
            x[test_idx, 1],
            c=[CLASS_COLORS[c] for c in y[test_idx]],
            s=50,
            marker="o",
            edgecolor=colors,
            linewidth=2.0,
        )
        wrong = test_idx[~np.asarray(test_correct, dtype=bool)]
        ax.scatter(x[wrong, 0], x[wrong, 1], c="k", s=18, marker="x", linewidth=1.2)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(title, fontsize=10)


# The three size units of chapter 16 (the released Fig 4b's x axes): table column -> axis label
SCALING_AXES = {"a_log_c": r"$n \ln C / d$", "a_sqrt_c": r"$n \sqrt{C} / d$", "n_over_d": r"$n C / d = N/d$"}


def class_scaling_panels(
    teachers: pd.DataFrame, students: pd.DataFrame, rho: float, capacity_band: tuple[float, float]
) -> plt.Figure:
    """Chapter 16's figure: the teachers' training accuracy (top row, one row per teacher in `teachers`)
    and the students' held-out accuracy (bottom row, `students`) against the size in each of the three
    units of `SCALING_AXES` (columns), one line per C, mean +- SEM over teachers (`teacher_id`). The
    line rho N = d is drawn where it is one line for every C (N/d = 1/rho), the band of the capacity
    claims (`capacity_band`, in n ln C / d) where that is."""
    classes = sorted(students["classes"].unique())
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(classes)))
    fig, axes = plt.subplots(2, len(SCALING_AXES), figsize=(12, 6.4), sharey="row")
    for col, (x, label) in enumerate(SCALING_AXES.items()):
        for row, (frame, y) in enumerate([(teachers, "teacher_train_acc"), (students, "test_acc")]):
            ax = axes[row][col]
            for c, color in zip(classes, colors):
                part = frame[frame["classes"] == c]
                if len(part):
                    errorbar_lines(ax, part, x, y, unit="teacher_id", color=color, label=f"C = {c}")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(label)
        axes[0][col].set_title(f"against {label}")
    axes[0][0].axvspan(*capacity_band, color="0.85", zorder=0, label="capacity claims' band")
    axes[1][2].axvline(1 / rho, color="k", ls="--", lw=1, label=r"$\rho N = d$")
    axes[0][0].set_ylabel("teacher's training accuracy")
    axes[1][0].set_ylabel("student's held-out accuracy")
    axes[0][0].legend(fontsize=7)
    axes[1][2].legend(fontsize=7)
    fig.tight_layout()
    return fig
