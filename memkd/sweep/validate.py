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

from memkd.config import invalid

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
            raise invalid(
                "memkd",
                "the notebook",
                must="name each experiment's config as an importable 'package.module:Class' in its metadata entry",
                shown=f"{target!r} for {name!r}, which cannot be imported ({err}),",
            ) from None
    return configs


def knob_parameters(params: Mapping[str, Any], config: type) -> list[str]:
    """The notebook parameters that set a knob of `config` (directly or as a scalar of a list knob)."""
    from memkd.config import SCALAR_TO_LIST

    knobs = config.knobs()
    return [name for name in params if SCALAR_TO_LIST.get(name, name) in knobs]


def _knob_of(name: str) -> str:
    from memkd.config import SCALAR_TO_LIST

    return SCALAR_TO_LIST.get(name, name)


def in_user_words(message: str, knob_to_param: Mapping[str, str], experiment: str, owner: str) -> str:
    """`message` with "the '<knob>' parameter of <experiment>" turned into the notebook parameter
    the user typed and its owner: "the 'alpha' parameter of 02_logit_distillation.ipynb"."""
    import re

    def swap(match: "re.Match[str]") -> str:
        knob = match.group(2)
        return f"{match.group(1)} '{knob_to_param.get(knob, knob)}' parameter of {owner}"

    return re.sub(rf"\b([Tt]he) '(\w+)' parameter of {re.escape(experiment)}\b", swap, message)


def check_points(
    nb,
    params: Mapping[str, Any],
    points: list[Mapping[str, Any]],
    owner: str = "the notebook",
    this_machine: bool = True,
) -> int:
    """Build every point's experiment config(s) and check that this machine can run it; return the
    number of configs checked.

    params: {name: Param} of the notebook; points: typed points (`expand_grid`); owner: what the
    user gave the parameters to (e.g. the notebook's file name). Raises ValueError for the first
    point an experiment would refuse, in the user's words: the notebook parameter they set
    (`alpha`, not the experiment's `alphas`), its allowed values and the value given; a device the
    machine lacks and a run too large for the device's memory are refused here too
    (`ExperimentConfig.check_resources`), before any kernel starts, when the runs execute on this
    machine (`this_machine`; a Dask cluster's workers may have devices this machine lacks).
    """
    from memkd.config import PROFILES, knob_overrides, make_config
    from memkd.sweep.grid import full_parameters

    configs = experiment_configs(nb)
    checked = 0
    for point in points:
        values = full_parameters(params, point)
        where = f" The refused point: {dict(point)}." if len(points) > 1 else ""
        profile = values.get("profile") or _env_profile()
        if configs and profile not in PROFILES:
            raise invalid("profile", owner, f"one of {PROFILES}", profile, after=where)
        for experiment, config in configs.items():
            names = knob_parameters(params, config)
            knob_to_param = {_knob_of(n): n for n in names}
            for name in names:
                _check_value(name, values[name], config, owner, where)
            overrides = knob_overrides(**{n: values[n] for n in names})
            try:
                config_at_point = make_config(config, experiment, profile, overrides)
                if this_machine:
                    config_at_point.check_resources()
            except ValueError as err:  # in the one format: "The '<knob>' parameter of <experiment> ..."
                name, rest = _split_message(str(err), experiment)
                name = knob_to_param.get(name, name)
                rest = in_user_words(rest, knob_to_param, experiment, owner)
                raise invalid(name, owner, says=f"{rest}{where}") from None
            except MemoryError as err:  # its sentence names the knob to reduce
                text = in_user_words(str(err), knob_to_param, experiment, owner)
                name = _memory_knob(text)
                raise invalid(
                    name,
                    owner,
                    says=f"must be small enough for this machine's memory: {text} "
                    f"Got {values.get(name, dict(point))!r} instead.{where}",
                ) from None
            checked += 1
    return checked


def _split_message(text: str, owner: str) -> tuple[str, str]:
    """("alphas", "must be ...") from "The 'alphas' parameter of <owner> must be ..."."""
    import re

    found = re.match(rf"The '([^']+)' parameter of {re.escape(owner)} (.*)", text, re.S)
    return (found.group(1), found.group(2)) if found else ("point", f"is refused: {text}")


def _memory_knob(text: str) -> str:
    """The parameter a memory refusal names first (after `in_user_words`), else 'point'."""
    import re

    found = re.search(r"the '(\w+)' parameter of", text)
    return found.group(1) if found else "point"


def _check_value(name: str, value: Any, config: type, owner: str, where: str) -> None:
    """Check one notebook parameter against its knob's constraint (a scalar against the item
    constraint of its list knob: `alpha` against each item of `alphas`). A zero, None or empty
    value keeps the profile's value (`memkd.config.knob_overrides`) and is not checked."""
    if value in (None, 0, 0.0, "", [], ()):
        return
    spec = config.__dataclass_fields__[_knob_of(name)].metadata["constraint"]
    if name != _knob_of(name) and spec.item is not None:
        spec = spec.item
    if not spec.check(value):
        raise invalid(name, owner, spec.allowed, value, after=where)


def _env_profile() -> str:
    import os

    return os.environ.get("MEMKD_PROFILE") or "quick"
