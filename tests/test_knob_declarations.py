"""Each knob name is declared once: its range, words and check live in one factory of memkd.config
(or of the module that owns the concept, e.g. `memkd.defences.withheld_knob`), and a config only picks
its default. A name written as `knob(...)` in two config classes is a second declaration that can
drift (another range, other words); this file counts them and fails on any.

Run it as a script for the counts, per name and in all:
    PYTHONPATH=. python tests/test_knob_declarations.py
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

import memkd
import memkd.audits  # noqa: F401  (AuditConfig: a config that no @experiment declares)
import memkd.experiments  # noqa: F401  (every @experiment config)
from memkd.config import ExperimentConfig, knob, real_interval, temperatures_knob
from memkd.memorization import StudentShapes


def config_classes(root: type = ExperimentConfig) -> list[type]:
    """`root` and every class of memkd below it (the configs of every experiment, their bases, the
    audit's; not the planted ones of this file)."""
    out = [root]
    for sub in root.__subclasses__():
        out += [c for c in config_classes(sub) if c not in out and c.__module__.startswith("memkd.")]
    return out


def declarations(classes: list[type]) -> dict[str, list[tuple[str, str]]]:
    """{knob name: [(class, how)]} for the fields each class writes in its own body, `how` being
    "knob" (declared there with `knob(...)`) or the name of the factory that built it."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for cls in classes:
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Call):
                func = node.value.func
                how = getattr(func, "id", getattr(func, "attr", ""))
                if how == "knob" or how.endswith("_knob"):
                    out[node.target.id].append((cls.__name__, how))
    return dict(out)


def declared_twice(decl: dict[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    """The names written as `knob(...)` in more than one class: {name: [classes]}."""
    direct = {name: [c for c, how in where if how == "knob"] for name, where in decl.items()}
    return {name: classes for name, classes in direct.items() if len(classes) > 1}


def redeclared_fields(classes: list[type]) -> dict[str, list[str]]:
    """{class: [fields it declares again although a base class has them]} (a default changes
    through PROFILE_VALUES, not by a second field). A field that a subclass turns into an internal one
    (metadata "internal": not a knob, e.g. sizes that the subclass derives from its own knobs) is no knob
    declared twice."""
    out = {}
    for cls in classes:
        own = {
            name
            for name in cls.__dict__.get("__annotations__", {})
            if not cls.__dataclass_fields__[name].metadata.get("internal")
        }
        inherited = {f.name for base in cls.__mro__[1:] if hasattr(base, "__dataclass_fields__") for f in fields(base)}
        if own & inherited:
            out[cls.__name__] = sorted(own & inherited)
    return out


def test_no_knob_name_is_declared_with_knob_in_two_configs():
    twice = declared_twice(declarations(config_classes()))
    assert not twice, f"declare these knobs once, with a factory in memkd.config: {twice}"


def test_each_name_has_one_factory():
    """A name built by two factories would have two ranges again."""
    factories = {name: sorted({how for _, how in where}) for name, where in declarations(config_classes()).items()}
    assert not {name: hows for name, hows in factories.items() if len(hows) > 1}


def test_no_config_redeclares_a_field_of_its_base():
    assert not redeclared_fields(config_classes())


def test_every_config_is_counted():
    names = {c.__name__ for c in config_classes()}
    for fn in memkd.declare.EXPERIMENTS.values():
        assert fn.config.__name__ in names
    assert {"RandomDataConfig", "OneHiddenLayerConfig", "AuditConfig"} <= names


# --- the checks fail on what they look for --------------------------------------------------------


@dataclass(frozen=True)
class _PlantedA(ExperimentConfig):
    temperatures: tuple = knob((1.0,), real_interval(0, math.inf), "T")


@dataclass(frozen=True)
class _PlantedB(ExperimentConfig):
    temperatures: tuple = knob((2.0,), real_interval(0, math.inf), "T again")


@dataclass(frozen=True)
class _FactoryOnly(ExperimentConfig):
    temperatures: tuple = temperatures_knob((3.0,))


@dataclass(frozen=True)
class _Redeclares(_FactoryOnly):
    temperatures: tuple = temperatures_knob((4.0,))


def test_a_planted_duplicate_is_found_and_factories_are_not():
    decl = declarations([_PlantedA, _PlantedB, _FactoryOnly])
    assert declared_twice(decl) == {"temperatures": ["_PlantedA", "_PlantedB"]}
    assert decl["temperatures"][2] == ("_FactoryOnly", "temperatures_knob")
    assert declared_twice(declarations([_PlantedA, _FactoryOnly, _Redeclares])) == {}


def test_a_planted_redeclaration_is_found():
    assert redeclared_fields([_FactoryOnly, _Redeclares]) == {"_Redeclares": ["temperatures"]}


@pytest.mark.parametrize("knob_name, value", [("temperatures", (0.0,)), ("classes", 1), ("alphas", (1.0,))])
def test_a_factory_knob_refuses_as_before(knob_name, value):
    """The factories keep the one message format, naming the knob and the experiment."""
    from memkd import experiments as ex

    with pytest.raises(ValueError, match=f"The '{knob_name}' parameter of logit_distillation must be"):
        ex.logit_distillation("smoke", **{knob_name: value})


# --- no module asks a config for another config's knob ---------------------------------------------

# getattr on a config with a knob's name written out and a fallback: a read of a knob that this config
# may not have (another experiment's), which hides a misspelt or renamed knob behind the fallback
PROBE = re.compile(r"getattr\((?:cfg|self|config|run)\s*,\s*[\"'][a-z_]+[\"']\s*,")


def probes(text: str) -> list[str]:
    """The lines of `text` that probe a config for a knob by name with a fallback."""
    return [line.strip() for line in text.splitlines() if PROBE.search(line)]


def test_no_module_probes_a_config_for_a_knob():
    root = Path(memkd.__file__).parent
    found = {str(p.relative_to(root)): probes(p.read_text(encoding="utf-8")) for p in root.rglob("*.py")}
    assert not {p: lines for p, lines in found.items() if lines}


def test_a_planted_probe_is_found():
    assert probes('    rhos = getattr(cfg, "rhos", (1.0,))\n    x = cfg.alphas') == [
        'rhos = getattr(cfg, "rhos", (1.0,))'
    ]
    assert probes("    getattr(self, name)\n    getattr(config, 'TABLE_COLUMNS_X')") == []


def test_each_config_answers_its_students_shapes():
    """memorization_tasks' memory check asks the config (`student_shapes`), never probes it."""
    from memkd.experiments.fig2_logits import LogitDistillationConfig
    from memkd.experiments.fig3_similarity import SimilarityConfig
    from memkd.experiments.one_hidden_layer import OneHiddenLayerConfig
    from memkd.config import make_config

    logit = make_config(LogitDistillationConfig, "logit_distillation", "smoke", {"alphas": (0.4, 0.6)})
    assert logit.student_shapes() == StudentShapes((50,), (0.4, 0.6), False)
    sim = make_config(SimilarityConfig, "similarity_distillation", "smoke", {})
    assert sim.student_shapes().similarity
    ohl = make_config(OneHiddenLayerConfig, "one_hidden_layer", "smoke", {"variant_widths": (80,)})
    assert ohl.student_shapes() == StudentShapes((ohl.width, 80), ohl.rhos, False)


def counts() -> str:
    """The declarations per name and in all, as text."""
    classes = config_classes()
    decl = declarations(classes)
    direct = sum(how == "knob" for where in decl.values() for _, how in where)
    built = sum(how != "knob" for where in decl.values() for _, how in where)
    lines = [
        f"{len(classes)} config classes, {len(decl)} knob names, {direct + built} declarations: "
        f"{direct} with knob(...), {built} by a factory",
        f"names written with knob(...) in more than one class: {len(declared_twice(decl))}",
        f"names that more than one class declares (either way): {sum(len(w) > 1 for w in decl.values())}",
    ]
    for name, where in sorted(decl.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(where) > 1:
            lines.append(f"  {name}: {len(where)} ({', '.join(sorted({how for _, how in where}))})")
    return "\n".join(lines)


if __name__ == "__main__":
    print(counts())
