"""The quick profiles of Figs 2, 5, 6 and 7 draw the paper's axes far enough to show its qualitative
features, and the helpers that state each axis against the paper's."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from memkd import experiments as ex
from memkd.book import grid_analysis as an
from memkd.book import plots
from memkd.book.chapters import ch02_logit_distillation, ch05_temperature_lr, ch06_dataset_composition
from memkd.config import make_config
from memkd.losses import cut_tail, tail_entries

matplotlib.use("Agg")


def quick(experiment):
    return make_config(getattr(ex, experiment).config, experiment, "quick", {})


def test_fig2_widths_straddle_the_teacher():  # the capacity threshold needs narrow and wide students
    cfg = quick("logit_distillation")
    widths = sorted(cfg.student_widths)
    assert len(widths) >= 4 and widths[0] <= cfg.teacher_width / 4 and widths[-1] > cfg.teacher_width
    assert any(math.isclose(a, 0.6) for a in cfg.alphas) and len(cfg.alphas) >= 3


def test_fig5_axes_reach_the_papers_range():  # temperatures to 100, learning rates over 1000x
    cfg, paper = quick("temperature_lr"), ex.temperature_lr.config.PROFILE_VALUES["paper"]
    assert min(cfg.temperatures) == 1.0 and max(cfg.temperatures) >= max(paper["temperatures"]) == 100.0
    assert max(cfg.lrs) / min(cfg.lrs) >= 1000 * (1 - 1e-9)
    assert cfg.tested_temperature in cfg.temperatures and cfg.tested_lr in cfg.lrs
    assert min(cfg.lrs) < cfg.tested_lr < max(cfg.lrs)  # the tested cell is not on the edge of the grid


def test_fig6_has_a_panel_per_class_count_and_small_dimensions():
    cfg = quick("dataset_composition")
    assert len(cfg.class_counts) >= 2 and len(cfg.per_class_values) >= 2 and len(cfg.input_dims) >= 5
    assert min(cfg.input_dims) < 5  # below the optimum that sat on the old grid's lowest edge (d = 5)


def test_fig7_cuts_start_at_half_a_percent():
    cfg = quick("logit_surgery")
    assert min(cfg.tail_fractions) == 0.005 and max(cfg.tail_fractions) == 0.5
    counts = [tail_entries(q, cfg.classes) for q in cfg.tail_fractions]
    assert counts[0] == 1 and len(set(counts)) == len(counts)  # each cut removes a different number of entries


def test_tail_entries_is_what_cut_tail_zeroes():
    probs = torch.softmax(torch.randn(7, 50), dim=-1)
    for q in (0.0, 0.005, 0.05, 0.2, 0.5, 1.0):
        assert int((cut_tail(probs, q) == 0).sum(dim=-1).max()) == tail_entries(q, 50)


def test_axis_range_and_table():
    assert an.axis_range([3e-5, 3e-4, 3e-3, 3e-2]) == "4 values, 3e-05 to 0.03 (1000×)"
    assert an.axis_range([250, 500, 750], relative_to=500) == "3 values, 250 to 750 (3×; 0.5× to 1.5× of 500)"
    assert an.axis_range([]) == "no values"
    table = an.axes_table({"lrs": [1e-3, 1e-1], "width": 10}, {"lrs": [1e-5, 1e-2], "width": 20}, ["lrs", "gone"])
    lines = table.splitlines()
    assert len(lines) == 3 and "0.001 to 0.1 (100×)" in lines[2] and "1e-05 to 0.01 (1000×)" in lines[2]


@pytest.mark.parametrize(
    "values, expect",
    [
        (
            [0.1, 0.3, 0.2],
            (
                "peaks inside the grid, at T = 10 (0.300): 0.100 at the smallest T = 1, and beyond the peak "
                "it falls to 0.200 at the largest T = 100"
            ),
        ),
        ([0.1, 0.2, 0.3], "is highest at the grid's largest T = 100 (0.300): the grid does not reach past the optimum"),
        ([0.3, 0.2, 0.1], "is highest at the grid's smallest T = 1 (0.300): the grid does not reach below the optimum"),
    ],
)
def test_axis_optimum(values, expect):
    assert ch05_temperature_lr.axis_optimum(pd.Series(values, index=[1.0, 10.0, 100.0]), "T") == expect


def test_heatmap_paints_grey_cells_and_leaves_missing_ones_white():
    import matplotlib.pyplot as plt

    pivot = pd.DataFrame([[0.5, 2.0], [np.nan, 3.0]], index=[5, 10], columns=[2, 4])
    fig, ax = plt.subplots()
    plots.heatmap(ax, pivot, grey=pivot < 1)
    layers = ax.get_images()
    assert len(layers) == 2  # the colours, then the grey overlay
    overlay = layers[1].get_array()
    assert not overlay.mask[0, 0] and overlay.mask[0, 1] and overlay.mask[1, 0]  # only the cell below 1 is grey
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.heatmap(ax, pivot, grey=pivot < 0)
    assert len(ax.get_images()) == 1  # nothing grey: no overlay
    plt.close(fig)


def test_capacity_outcome_names_the_threshold_and_the_trend():
    rows = [
        {"dataset": k, "alpha": 0.6, "width": w, "test_acc": acc + 0.01 * k}
        for k in range(3)
        for w, acc in [(16, 0.02), (64, 0.05), (250, 0.09)]
    ]
    text = ch02_logit_distillation.capacity_outcome(pd.DataFrame(rows), 0.6, chance=0.02, teacher_width=125)
    assert "0.030 at p = 16, 0.060 at p = 64, 0.100 at p = 250" in text
    assert "first exceeds twice chance (0.040) at p = 64 (0.51× the teacher's width 125)" in text
    assert "rises with every step in width" in text
    flat = pd.DataFrame([{**r, "test_acc": 0.01} for r in rows])
    assert "no width reaches twice chance" in ch02_logit_distillation.capacity_outcome(flat, 0.6, 0.02, 125)
    assert ch02_logit_distillation.capacity_outcome(pd.DataFrame(rows[:1]), 0.6, 0.02, 125) == ""


def test_composition_cells_names_white_and_grey_cells():
    rows = [
        {"classes": 10, "per_class": 5, "input_dim": 2, "dataset": k, "teacher_memorized": False, "test_acc": np.nan}
        for k in range(2)
    ]
    rows += [
        {"classes": 10, "per_class": 5, "input_dim": d, "dataset": k, "teacher_memorized": True, "test_acc": acc}
        for k in range(2)
        for d, acc in [(5, 0.3), (640, 0.08)]
    ]
    text = ch06_dataset_composition.composition_cells(pd.DataFrame(rows))
    assert text == (
        "White cells (no teacher memorized its dataset within its budget): C = 10, 5 per class, d = 2. "
        "Grey cells (mean held-out accuracy below chance 1/C): C = 10, 5 per class, d = 640."
    )
    assert "Grey cells (mean held-out accuracy below chance 1/C): none" in ch06_dataset_composition.composition_cells(
        pd.DataFrame([r for r in rows if r["input_dim"] != 640])
    )
