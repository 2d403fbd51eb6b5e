"""Checking a sweep's points against the experiment's knobs before any kernel starts.

Owns: the `memkd` entry of a chapter's notebook metadata, which names the experiment(s) the
chapter runs and their config classes::

    "metadata": {"memkd": {"experiments": {
        "logit_distillation": "memkd.experiments.fig2_logits:LogitDistillationConfig"}}}

and `check_points`, which builds each point's config the way the chapter does
(`memkd.config.knob_overrides`, then `memkd.config.make_config` at the point's profile), so that
`-p alpha=1.5` fails at once with the knob's allowed range instead of in cell 6 of every run.
A notebook parameter takes part when it is a knob of the config, directly (`seed`, `device`,
`targets`) or as the scalar form of a list knob (`alpha` -> `alphas`). A notebook without the
entry is not checked here; papermill then reports what the notebook itself raises.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

METADATA_KEY = "memkd"


def experiment_configs(nb) -> dict[str, type]:
    """{experiment name: config class} from the notebook's `memkd` metadata ({} without it).

    Raises ValueError when an entry does not name an importable class ("module:Class").
    """
    entries = nb.metadata.get(METADATA_KEY, {}).get("experiments", {})
    configs = {}
    for name, target in entries.items():
        module, _, attr = str(target).partition(":")
        try:
            configs[name] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"The 'nb' parameter of experiment_configs must name each experiment's config in its "
                             f"metadata as an importable 'package.module:Class'. Got {target!r} for {name!r}, which "
                             f"cannot be imported ({err}), instead.") from None
    return configs


def knob_parameters(params: Mapping[str, Any], config: type) -> list[str]:
    """The notebook parameters that set a knob of `config` (directly or as a scalar of a list knob)."""
    from memkd.config import SCALAR_TO_LIST

    knobs = config.knobs()
    return [name for name in params if SCALAR_TO_LIST.get(name, name) in knobs]


def check_points(nb, params: Mapping[str, Any], points: list[Mapping[str, Any]]) -> int:
    """Build every point's experiment config(s); return the number of configs checked.

    params: {name: Param} of the notebook; points: typed points (`expand_grid`).
    Raises ValueError naming the point and the knob (with its allowed values) for the first
    point an experiment would refuse.
    """
    from memkd.config import knob_overrides
    from memkd.config import PROFILES
    from memkd.config import make_config
    from memkd.sweep.grid import full_parameters

    configs = experiment_configs(nb)
    checked = 0
    for point in points:
        values = full_parameters(params, point)
        profile = values.get("profile") or _env_profile()
        if configs and profile not in PROFILES:
            raise ValueError(f"The 'profile' parameter of check_points must be one of {PROFILES}: the point "
                             f"{dict(point)} is refused before running. Got {profile!r} instead.")
        for experiment, config in configs.items():
            overrides = knob_overrides(**{n: values[n] for n in knob_parameters(params, config)})
            try:
                make_config(config, experiment, profile, overrides)
            except ValueError as err:
                raise ValueError(f"The 'points' parameter of check_points holds the point {dict(point)}, which is "
                                 f"refused before running: {err}") from None
            checked += 1
    return checked


def _env_profile() -> str:
    import os

    return os.environ.get("MEMKD_PROFILE") or "quick"
