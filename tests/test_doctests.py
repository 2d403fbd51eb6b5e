"""The docstring examples of memkd run: every `>>>` in the package is a doctest collected here.

`make test` runs `pytest` on tests/, so the examples run with the suite (one test per docstring,
named after it); `pytest --doctest-modules memkd` collects the same examples. Each example is small
(shapes of a few samples, at most a teacher trained for 100 epochs on 15 points): the suite's
examples take about 0.3 s together on 2 idle cores. An example that cannot run (a book build)
is written without the `>>>` prompt, so no example is skipped.
"""

from __future__ import annotations

import doctest
import importlib
import time
from pathlib import Path

import pytest
import torch

import memkd

PACKAGE = Path(memkd.__file__).parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
SLOW_S = 10.0  # far above any example's time even on a busy machine: a training loop slipped in


def modules_with_examples() -> list[str]:
    """The dotted names of memkd's modules whose source holds a `>>>`."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def collect() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in modules_with_examples():
        module = importlib.import_module(name)
        found += [t for t in finder.find(module, name) if t.examples and t.name.startswith(name)]
    unique = {t.name: t for t in found}  # a function re-exported by another module is found once
    return sorted(unique.values(), key=lambda t: t.name)


DOCTESTS = collect()


def test_the_package_has_its_examples():
    """The count cannot silently fall to zero (a finder or import change would pass every test below)."""
    examples = sum(len(t.examples) for t in DOCTESTS)
    assert len(DOCTESTS) >= 45 and examples >= 100, (len(DOCTESTS), examples)
    shapes = [t.name for t in DOCTESTS if any("torch.Size" in e.want for e in t.examples)]
    assert len(shapes) >= 15, shapes  # the core's tensor functions show the shapes they return


def test_no_example_is_skipped():
    skipped = [t.name for t in DOCTESTS for e in t.examples if e.options.get(doctest.SKIP)]
    assert not skipped, f"examples marked +SKIP (write them without '>>>' or make them run): {skipped}"


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test: doctest.DocTest, one_thread):
    torch.manual_seed(0)  # examples that draw random inputs print shapes only, but stay repeatable
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out: list[str] = []
    started = time.perf_counter()
    result = runner.run(test, out=out.append, clear_globs=True)
    seconds = time.perf_counter() - started
    assert result.failed == 0, "".join(out)
    assert seconds < SLOW_S, f"{test.name} took {seconds:.1f} s: an example must stay small"
