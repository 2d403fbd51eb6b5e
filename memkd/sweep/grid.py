"""The notebook's parameters and the grids over them: what a sweep runs, before anything runs.

Owns: reading the `parameters` cell (papermill's own parser, `Param`), the `-p name=v1,v2` syntax
(each value read as YAML), YAML grid files, the expansion of a grid into typed and checked points,
the `profile` a point inherits from $MEMKD_PROFILE, and the stable id of a run.

A grid is a mapping ``{name: value or list of values}``; lists expand as a product (a list-typed
parameter therefore takes ``[[1, 2]]`` for the single value ``[1, 2]``). An optional ``points:``
entry lists explicit points (mappings), each crossed with the product of the other entries.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from memkd.config import invalid

RESULTS_PARAM = "results_dir"  # set by the sweep to <run folder>/results; never swept
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict, "tuple": tuple}


@dataclass(frozen=True)
class Param:
    """One assignment of a notebook's `parameters` cell."""

    name: str
    type: type | None  # None: no annotation and a None default, any literal goes
    default: Any
    help: str = ""

    def describe(self) -> str:
        """'alpha: float = 0.5  # help text', as `memkd sweep --list-params` prints it."""
        kind = self.type.__name__ if self.type else "any"
        text = f"{self.name}: {kind} = {self.default!r}"
        return f"{text}  # {self.help}" if self.help else text


def read_notebook(notebook: str | os.PathLike):
    """The notebook at `notebook` as an nbformat (v4) node."""
    import nbformat

    return nbformat.read(str(notebook), as_version=4)


def notebook_parameters(notebook) -> dict[str, Param]:
    """The assignments of the cell tagged `parameters` (a path or an nbformat notebook).

    Each line ``name: type = literal  # help`` is read by papermill's own parser (the one behind
    `papermill --help-notebook`); the type comes from the annotation, else from the default's type.
    Raises ValueError when no cell is tagged or a default is not a Python literal.
    """
    from papermill.translators import papermill_translators

    nb = notebook if hasattr(notebook, "cells") else read_notebook(notebook)
    where = "the notebook" if hasattr(notebook, "cells") else str(notebook)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise invalid(
            "notebook", "memkd sweep", must="have a cell tagged 'parameters'", shown=f"{where}, which has no such cell,"
        )
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    language = nb.metadata.get("kernelspec", {}).get("language", "python")
    translator = papermill_translators.find_translator(kernel, language)
    params: dict[str, Param] = {}
    for found in translator.inspect(cells[0]):
        try:
            default = ast.literal_eval(found.default)
        except (ValueError, SyntaxError) as err:
            raise invalid(
                "notebook",
                "memkd sweep",
                must=f"give each parameter a literal default: the default of {found.name!r} in {where} "
                "must be a literal",
                got=found.default,
            ) from err
        annotation = found.inferred_type_name.split("[")[0].strip()
        kind = _TYPES.get(annotation)
        if kind is None and default is not None:
            kind = type(default)
        params[found.name] = Param(found.name, kind, default, found.help)
    return params


def params_listing(params: Mapping[str, Param]) -> str:
    """The parameters, one per line, for error messages."""
    return "The notebook's parameters are:\n" + "\n".join(f"  {p.describe()}" for p in params.values())


# --------------------------------------------------------------------------- the command line
@dataclass(frozen=True)
class CliValue:
    """One value typed on the command line: its YAML value and, for a scalar, its text (unquoted).

    The text decides for str, int and float parameters (so `label=no` stays "no" and `lr=1e-3`
    is 0.001, which YAML 1.1 would read as text); the YAML value decides for the others.
    """

    value: Any
    text: str | None


def parse_cli_grid(assignments: Iterable[str], owner: str = "memkd sweep") -> dict[str, list[CliValue]]:
    """Turn repeated ``-p name=v1,v2`` options into ``{name: [CliValue, ...]}``.

    `owner` is what the user typed the options to, named in error messages.

    The right-hand side is read as the items of a YAML flow list: ``alpha=0.2,0.6`` gives two
    values, ``ids=[1, 2]`` one list value, ``title='a,b'`` one string with a comma. `expand_grid`
    then converts each value to its parameter's type.
    """
    import yaml

    grid: dict[str, list[CliValue]] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise invalid("-p", owner, "name=value or name=value1,value2,..", item)  # the helper adds the last dot
        if name in grid:
            raise invalid(name, owner, f"given once: list its values in one -p ({name}=v1,v2)", shown="it twice")
        if not raw.strip():
            grid[name] = [CliValue("", "")]
            continue
        try:
            node = yaml.compose(f"[{raw}]", Loader=yaml.SafeLoader)
            values = yaml.safe_load(f"[{raw}]")
        except yaml.YAMLError as err:
            raise invalid(
                name,
                owner,
                says="must be YAML flow items separated by commas (quote a value that holds a comma, "
                f"a colon or a #). Got {raw!r} instead: {err}",
            ) from None
        grid[name] = [
            CliValue(v, n.value if isinstance(n, yaml.ScalarNode) else None) for v, n in zip(values, node.value)
        ]
    return grid


def load_grid(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML grid file: a mapping of names to values or lists, plus an optional `points:` list."""
    import yaml

    grid = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(grid, dict):
        raise invalid(
            "path",
            "load_grid",
            must="name a YAML file holding a mapping of parameter names",
            shown=f"{str(path)!r}, which holds a {type(grid).__name__},",
        )
    return grid


# --------------------------------------------------------------------------- typed points
def _coerce(param: Param, value: Any) -> Any:
    """`value` as `param.type`; TypeError or ValueError when it is not one."""
    kind = param.type
    if isinstance(value, CliValue):
        if value.text is not None and kind is str:
            return value.text
        if value.text is not None and kind in (int, float):
            try:
                return kind(value.text)
            except ValueError:
                pass  # e.g. int("1.5"): the type check below refuses the YAML value
            if kind is int:  # 1e9 or 2.0 typed for an int: a whole number written as a float
                try:
                    number = float(value.text)
                except ValueError:
                    number = math.nan
                if number.is_integer():
                    return int(number)
        value = value.value
    if kind is None:
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
        return value
    raise TypeError


def _typed(params: Mapping[str, Param], name: str, value: Any, owner: str) -> Any:
    if name not in params:
        raise invalid(
            name,
            owner,
            "a parameter of the notebook",
            shown=f"unknown parameter {name!r}",
            after=f" {params_listing(params)}",
        )
    if name == RESULTS_PARAM:
        raise invalid(
            RESULTS_PARAM,
            owner,
            must="not be in the grid: it is set by the sweep (one folder per run); do not sweep it",
            got=value.value if isinstance(value, CliValue) else value,
        )
    try:
        return _coerce(params[name], value)
    except (TypeError, ValueError):
        kind = params[name].type.__name__ if params[name].type else "literal"
        article = "an" if kind[0] in "aeiou" else "a"
        if isinstance(value, CliValue):
            shown = repr(value.text) if value.text is not None else repr(value.value)
        else:
            shown = f"{value!r} ({type(value).__name__})"
        raise invalid(name, owner, f"{article} {kind}", shown=shown, after=f" {params_listing(params)}") from None


def expand_grid(
    params: Mapping[str, Param], grid: Mapping[str, Any], owner: str = "the notebook"
) -> list[dict[str, Any]]:
    """All points of `grid` (product of the lists, times the explicit `points`), typed and checked.

    Raises ValueError, listing the notebook's parameters, for an unknown name, a value of the wrong
    type, a swept `results_dir`, or a grid with no point at all; `owner` (e.g. the notebook's file
    name) is named in the message as the owner of the parameter.
    """
    grid = dict(grid)
    explicit = grid.pop("points", None)
    if explicit is not None and (not isinstance(explicit, list) or not all(isinstance(p, dict) for p in explicit)):
        raise invalid("points", f"{owner}'s grid", "a list of mappings {name: value}", explicit)
    axes = {name: values if isinstance(values, list) else [values] for name, values in grid.items()}
    for point in explicit or []:
        clash = sorted(set(point) & set(axes))
        if clash:
            raise invalid(
                "points",
                f"{owner}'s grid",
                must="not set a grid entry's name",
                shown=f"{clash}, which appear both in 'points' and as grid entries,",
            )
    typed_axes = {name: [_typed(params, name, v, owner) for v in values] for name, values in axes.items()}
    typed_points = (
        [{n: _typed(params, n, v, owner) for n, v in p.items()} for p in explicit] if explicit is not None else [{}]
    )
    points, seen = [], set()
    for base in typed_points:
        for combo in itertools.product(*typed_axes.values()):
            point = {**base, **dict(zip(typed_axes, combo))}
            key = json.dumps(point, sort_keys=True, default=str)
            if point and key not in seen:
                seen.add(key)
                points.append(point)
    if not points:
        empty = [name for name, values in axes.items() if not values]
        why = f"{empty} have no values" if empty else "no parameter values given"
        raise invalid(
            "grid", owner, says=f"must give at least one point, but the grid is empty ({why}). {params_listing(params)}"
        )
    return points


def resolve_point(params: Mapping[str, Param], point: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters to inject: the point, plus an empty `profile` taken from $MEMKD_PROFILE
    (so that remote workers agree with the machine that planned the sweep)."""
    point = dict(point)
    profile = point.get("profile", params["profile"].default if "profile" in params else None)
    if profile == "" and os.environ.get("MEMKD_PROFILE"):
        point["profile"] = os.environ["MEMKD_PROFILE"]
    return point


def full_parameters(params: Mapping[str, Param], point: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value at `point`: the notebook's defaults, then the point."""
    return {**{name: p.default for name, p in params.items()}, **point}


# --------------------------------------------------------------------------- run identity
def code_digest(nb) -> str:
    """sha256 of the notebook's code cells: editing one starts fresh runs."""
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()


def run_id(notebook, point: Mapping[str, Any], params: Mapping[str, Param] | None = None) -> str:
    """16 hex digits hashing the notebook's code cells and the full parameter set (defaults filled
    in, `results_dir` left out). `notebook`: a path or an nbformat notebook."""
    nb = notebook if hasattr(notebook, "cells") else read_notebook(notebook)
    params = params if params is not None else notebook_parameters(nb)
    full = {k: v for k, v in full_parameters(params, point).items() if k != RESULTS_PARAM}
    blob = json.dumps({"code": code_digest(nb), "parameters": full}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
