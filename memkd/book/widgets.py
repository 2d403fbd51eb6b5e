"""ipywidgets explorers for the book (ipywidgets is imported only here, when used)."""

from __future__ import annotations

from typing import Any


def toy_2d_sliders(**defaults: Any) -> tuple:
    """The explorer's sliders (temperature, alpha, width, dataset seed), each label shown whole
    (ipywidgets cuts a description wider than its default 80 px: "temperat...")."""
    import ipywidgets as w

    whole = {"description_width": "initial"}
    return (
        w.FloatLogSlider(
            value=defaults.get("temperature", 20.0),
            base=10,
            min=0,
            max=2,
            step=0.1,
            description="temperature",
            style=whole,
        ),
        w.FloatSlider(value=defaults.get("alpha", 0.6), min=0.2, max=0.8, step=0.1, description="alpha", style=whole),
        w.IntSlider(value=defaults.get("width", 500), min=50, max=1000, step=50, description="width", style=whole),
        w.IntSlider(value=defaults.get("seed", 0), min=0, max=20, description="dataset seed", style=whole),
    )


def toy_2d_explorer(profile: str = "quick", device: str = "auto", **defaults: Any):
    """Sliders for temperature, alpha, width and dataset seed that retrain the Fig 1 toy and
    redraw its decision regions (a few seconds on a CPU). Returns the widget to display."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from memkd.experiments import toy_2d_regions
    from memkd.book.plots import decision_regions

    temperature, alpha, width, seed = toy_2d_sliders(**defaults)
    out = w.Output()

    def redraw(_=None) -> None:
        regions = toy_2d_regions(
            profile,
            dataset=seed.value,
            device=device,
            grid_size=80,
            temperatures=(float(temperature.value),),
            alphas=(round(alpha.value, 2),),
            student_widths=(width.value,),
            teacher_width=width.value,
        )
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
            for ax, name in zip(axes, regions["regions"]):
                acc = regions["test_acc"][name]
                decision_regions(
                    ax,
                    regions["regions"][name],
                    regions["extent"],
                    regions["x"],
                    regions["y"],
                    regions["train_idx"],
                    regions["test_idx"],
                    None if name == "teacher" else regions["test_correct"][name],
                    title=f"{name}" + ("" if name == "teacher" else f": held-out acc {acc:.2f}"),
                )
            plt.show()

    button = w.Button(description="retrain", button_style="primary")
    button.on_click(redraw)
    redraw()
    return w.VBox([w.HBox([temperature, alpha]), w.HBox([width, seed, button]), out])
