"""One error format: every ValueError raised in memkd/ starts with "The '<name>' parameter of <owner> ".

The message of each `raise ValueError(...)` (or of a ValueError subclass defined in memkd) must be
a call to `memkd.config.invalid`, or a string / f-string whose first constant part starts with
"The '". The check reads the source with `ast`, so it also covers raises no test reaches.
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
    bases = {node.name: {_name(b) for b in node.bases}
             for tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
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


def test_every_value_error_in_memkd_follows_the_format():
    paths = sorted(PACKAGE.rglob("*.py"))
    seen, bad = raises(paths)
    assert seen >= 50, f"found only {seen} ValueError raises in {PACKAGE}: is the scan reading the package?"
    assert not bad, (f"{len(bad)} ValueError(s) whose message does not start with {PREFIX!r}<name>' parameter "
                     f"of <owner> (or use memkd.config.invalid):\n" + "\n".join(bad))


def test_the_checker_finds_a_bad_raise(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        "from memkd.config import invalid\n"
        "class BadArchive(ValueError):\n"                                       # 2
        "    pass\n"
        "class WorseArchive(BadArchive):\n"                                     # 4
        "    pass\n"
        "def f(x):\n"
        "    raise ValueError(f'f: x must be > 0. Got {x} instead.')\n"          # 7: bad
        "    raise ValueError('x must be positive')\n"                          # 8: bad
        "    raise ValueError(message)\n"                                       # 9: bad (not checkable)
        "    raise ValueError\n"                                                # 10: bad (no message)
        "    raise WorseArchive(f'{x} is damaged')\n"                           # 11: bad (a subclass)
        "    raise ValueError(f\"The 'x' parameter of f must be > 0. Got {x!r} instead.\")\n"  # 12: good
        "    raise BadArchive(\"The 'path' parameter of f must be the archive.\")\n"      # 13: good
        "    raise invalid('x', 'f', 'an int >= 1', x)\n"                       # 14: good
        "    raise TypeError('not a ValueError')\n"                             # 15: not checked
    )
    seen, bad = raises([source])
    assert bad == [f"{source}:{line}" for line in (7, 8, 9, 10, 11)]
    assert seen == 8


def test_invalid_writes_the_format():
    err = invalid("alpha", "logit_distillation", "a float in the open interval (0, 1)", 1.5)
    assert isinstance(err, ValueError)
    assert str(err) == ("The 'alpha' parameter of logit_distillation must be a float in the open interval (0, 1). "
                        "Got 1.5 instead.")
    assert str(invalid("setting", "shuffled_task", "one of ('clean',)", "noise")).endswith("Got 'noise' instead.")
    with pytest.raises(ValueError, match=r"^The 'alpha' parameter of logit_distillation must be"):
        raise err
