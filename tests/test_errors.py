"""One error helper: every ValueError raised in memkd/ is built by `memkd.config.invalid`.

Each ValueError (or ValueError subclass defined in memkd) raised in memkd/ must be `raise invalid(...)`:
a `raise ValueError(...)` anywhere else fails `test_every_value_error_in_memkd_goes_through_the_helper`.
The helper writes the one format, "The '<name>' parameter of <owner> ..."; the older check of the
wording (a message that starts with "The '", or a call to the helper) still runs beside it.
The checks read the source with `ast`, so they also cover raises no test reaches.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from memkd.config import invalid

PACKAGE = Path(__file__).resolve().parents[1] / "memkd"
PREFIX = "The '"
HELPER = "invalid"


def _name(node: ast.expr) -> str | None:
    """`ValueError` for `ValueError` and for `x.ValueError`; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def value_error_classes(trees: list[ast.AST]) -> set[str]:
    """ValueError and the names of the classes defined in `trees` that derive from it (at any depth)."""
    bases = {
        node.name: {_name(b) for b in node.bases}
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    found = {"ValueError"}
    while True:
        more = {cls for cls, parents in bases.items() if cls not in found and parents & found}
        if not more:
            return found
        found |= more


def message_ok(message: ast.expr | None) -> bool:
    """A call to the helper, or a string / f-string whose first constant part starts with PREFIX."""
    if isinstance(message, ast.Call):
        return _name(message.func) == HELPER
    if isinstance(message, ast.Constant):
        return isinstance(message.value, str) and message.value.startswith(PREFIX)
    if isinstance(message, ast.JoinedStr) and message.values:
        first = message.values[0]
        return isinstance(first, ast.Constant) and str(first.value).startswith(PREFIX)
    return False


def raises(paths: list[Path]) -> tuple[int, list[str]]:
    """(ValueError raises seen, "file:line" of each one whose message is not in the format)."""
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in paths}
    errors = value_error_classes(list(trees.values()))
    seen, bad = 0, []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc
            if isinstance(exc, ast.Call) and _name(exc.func) == HELPER:
                seen += 1  # raise invalid(...): the helper writes the format
                continue
            called = exc.func if isinstance(exc, ast.Call) else exc
            if _name(called) not in errors:
                continue
            seen += 1
            message = exc.args[0] if isinstance(exc, ast.Call) and exc.args else None
            if not message_ok(message):
                bad.append((str(path), node.lineno))
    return seen, [f"{path}:{line}" for path, line in sorted(bad)]


def direct_raises(paths: list[Path]) -> list[str]:
    """ "file:line" of each raise that builds a ValueError (or a subclass defined in `paths`) itself,
    instead of raising what `memkd.config.invalid` returns."""
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in paths}
    errors = value_error_classes(list(trees.values()))
    bad = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            called = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if _name(called) in errors:
                bad.append((str(path), node.lineno))
    return [f"{path}:{line}" for path, line in sorted(bad)]


def test_every_value_error_in_memkd_goes_through_the_helper():
    bad = direct_raises(sorted(PACKAGE.rglob("*.py")))
    assert not bad, (
        f"{len(bad)} ValueError(s) raised without memkd.config.invalid (write "
        f"`raise invalid(name, owner, ...)`; its keywords cover other shapes):\n" + "\n".join(bad)
    )


def test_the_helper_check_finds_a_direct_raise(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        "from memkd.config import invalid\n"
        "class BadArchive(ValueError):\n"
        "    pass\n"
        "def f(x):\n"
        "    raise ValueError(f\"The 'x' parameter of f must be > 0. Got {x!r} instead.\")\n"  # 5: bad (well worded)
        "    raise BadArchive(\"The 'path' parameter of f must be the archive.\")\n"  # 6: bad (a subclass)
        "    raise ValueError\n"  # 7: bad
        "    raise invalid('x', 'f', 'an int >= 1', x)\n"  # 8: good
        "    raise invalid('path', 'f', says='is damaged.', error=BadArchive)\n"  # 9: good
        "    raise TypeError('not a ValueError')\n"  # 10: not checked
        "    raise err\n"  # 11: a re-raise
    )
    assert direct_raises([source]) == [f"{source}:{line}" for line in (5, 6, 7)]


def test_every_value_error_in_memkd_follows_the_format():
    paths = sorted(PACKAGE.rglob("*.py"))
    seen, bad = raises(paths)
    assert seen >= 50, f"found only {seen} ValueError raises in {PACKAGE}: is the scan reading the package?"
    assert not bad, (
        f"{len(bad)} ValueError(s) whose message does not start with {PREFIX!r}<name>' parameter "
        f"of <owner> (or use memkd.config.invalid):\n" + "\n".join(bad)
    )


def test_the_checker_finds_a_bad_raise(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        "from memkd.config import invalid\n"
        "class BadArchive(ValueError):\n"  # 2
        "    pass\n"
        "class WorseArchive(BadArchive):\n"  # 4
        "    pass\n"
        "def f(x):\n"
        "    raise ValueError(f'f: x must be > 0. Got {x} instead.')\n"  # 7: bad
        "    raise ValueError('x must be positive')\n"  # 8: bad
        "    raise ValueError(message)\n"  # 9: bad (not checkable)
        "    raise ValueError\n"  # 10: bad (no message)
        "    raise WorseArchive(f'{x} is damaged')\n"  # 11: bad (a subclass)
        "    raise ValueError(f\"The 'x' parameter of f must be > 0. Got {x!r} instead.\")\n"  # 12: good
        "    raise BadArchive(\"The 'path' parameter of f must be the archive.\")\n"  # 13: good
        "    raise invalid('x', 'f', 'an int >= 1', x)\n"  # 14: good
        "    raise TypeError('not a ValueError')\n"  # 15: not checked
    )
    seen, bad = raises([source])
    assert bad == [f"{source}:{line}" for line in (7, 8, 9, 10, 11)]
    assert seen == 8


def test_invalid_writes_the_format():
    err = invalid("alpha", "logit_distillation", "a float in the open interval (0, 1)", 1.5)
    assert isinstance(err, ValueError)
    assert str(err) == (
        "The 'alpha' parameter of logit_distillation must be a float in the open interval (0, 1). Got 1.5 instead."
    )
    assert str(invalid("setting", "shuffled_task", "one of ('clean',)", "noise")).endswith("Got 'noise' instead.")
    with pytest.raises(ValueError, match=r"^The 'alpha' parameter of logit_distillation must be"):
        raise err


def test_invalid_writes_the_other_shapes():
    assert str(invalid("seed", "EnsembleMLP", must="hold one seed per member (4)", shown="3 seeds")) == (
        "The 'seed' parameter of EnsembleMLP must hold one seed per member (4). Got 3 seeds instead."
    )
    assert str(invalid("name", "f", "one of ('a',)", "b", after=" Known: a.")) == (
        "The 'name' parameter of f must be one of ('a',). Got 'b' instead. Known: a."
    )
    assert str(invalid("x", "f", "an int", None)).endswith("Got None instead.")  # None is a value, not "nothing"
    renamed = invalid("old", "f", says="was renamed: use 'new'.")
    assert str(renamed) == "The 'old' parameter of f was renamed: use 'new'."

    class Damaged(ValueError):
        pass

    assert isinstance(invalid("path", "f", says="is damaged.", error=Damaged), Damaged)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # neither allowed nor must
        {"allowed": "an int", "must": "divide 4", "got": 1},  # both
        {"allowed": "an int"},  # no value
        {"allowed": "an int", "got": 1, "shown": "one"},  # two values
        {"says": "is bad.", "got": 1},  # says with more
    ],
)
def test_invalid_refuses_a_call_that_mixes_shapes(kwargs):
    with pytest.raises(TypeError, match="^invalid: "):
        invalid("x", "f", **kwargs)
