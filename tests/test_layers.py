"""The package's floors: a module imports only from its own floor or the floors below it.

core (memkd.<module>) < memkd.experiments < memkd.sweep < memkd.book < memkd.cli

Inside the core, four floors: the base (config, statistics, losses, seeds, ...) < the training
loop (`train`, `fused`) < the models and the data < the protocol that puts them together
(`distillation`, `memorization`, `students`, `defences`, `audits`, and the package itself). A model may use the
loop and the losses; the loop never imports a model.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "memkd"
FLOORS = {"experiments": 1, "sweep": 2, "book": 3, "cli": 4, "__main__": 4}
CORE_FLOORS = {  # memkd.<name> of the core -> its floor inside the core
    **dict.fromkeys(
        (
            "config",
            "device",
            "seeds",
            "threads",
            "device_memory",
            "metrics",
            "evaluation",
            "power",
            "tables",
            "provenance",
            "losses",
            "declare",
        ),
        0,
    ),
    **dict.fromkeys(("train", "fused"), 1),
    **dict.fromkeys(("models", "data"), 2),
    **dict.fromkeys(("distillation", "memorization", "students", "defences", "audits"), 3),
}
PROTOCOL = 3  # the package itself (`memkd/__init__.py` imports the audit)


def floor_of(module: str) -> tuple[int, int]:
    """The floor of a dotted module name inside memkd: (0, floor inside the core) for the core,
    (floor, 0) above it; (-1, 0) outside memkd."""
    parts = module.split(".")
    if parts[0] != "memkd":
        return (-1, 0)
    if len(parts) == 1:
        return (0, PROTOCOL)
    if parts[1] in FLOORS:
        return (FLOORS[parts[1]], 0)
    return (0, CORE_FLOORS[parts[1]])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `import memkd...` / `from memkd... import` in a file, lazy ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, m) for line, m in out if m == "memkd" or m.startswith("memkd.")]


def upward_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for line, target in imported_modules(path):
            if target != "memkd" and floor_of(target) > floor_of(module):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    return found


def test_no_import_runs_up_a_floor():
    assert upward_imports() == []


def test_the_floor_check_sees_an_upward_import(tmp_path):
    # the checker itself: a core module importing the book is found
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from memkd.book.chapter import Chapter\n")
    assert imported_modules(bad) == [(2, "memkd.book.chapter")]
    assert floor_of("memkd.book.chapter") > floor_of("memkd.metrics")


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("memkd.fused", "memkd.models.mlp"),  # the loop importing a model
        ("memkd.train", "memkd.models.fused_mlp"),
        ("memkd.losses", "memkd.train"),  # the base importing the loop
        ("memkd.metrics", "memkd.data.linear"),
        ("memkd.models.linear", "memkd.distillation"),  # a model importing the protocol
        ("memkd.data.linear", "memkd.students"),
        ("memkd.evaluation", "memkd.memorization"),  # the metrics floor importing the tasks
    ],
)
def test_an_upward_import_inside_the_core_is_found(importer, imported):
    assert floor_of(imported) > floor_of(importer)


def test_every_core_module_has_a_floor():
    names = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    }
    core = names - set(FLOORS) - {"__init__"}
    assert core == set(CORE_FLOORS), core ^ set(CORE_FLOORS)


def private_imports() -> list[str]:
    """Every `from memkd.x import _name` in the package: a private name used across modules."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("memkd"):
                found += [
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_no_private_name_is_imported_across_modules():
    assert private_imports() == []


def test_shared_knobs_are_declared_once_in_the_config():
    """The protocol's knobs (teacher stop, softening, learning rates, epochs, seeds per setting,
    batch sizes) come from the factories of memkd.config, so no experiment module writes their help."""
    import re

    from dataclasses import fields

    import memkd.experiments  # noqa: F401  (declares every experiment)
    from memkd.declare import EXPERIMENTS

    by_name: dict[str, set[str]] = {}
    for fn in EXPERIMENTS.values():
        for f in fields(fn.config):
            if f.name in ("teacher_stop", "soften_student", "seed", "device", "progress"):
                by_name.setdefault(f.name, set()).add(f.metadata["help"].split(" (")[0])
    assert by_name and all(len(helps) == 1 for helps in by_name.values()), by_name
    written = re.compile(
        r"(?<!_)\bknob\([^)]*\"[^\"]*(learning rate|epoch budget|student seeds per|mini-batch size|"
        r"divide the student's logits)"
    )
    for path in sorted((PACKAGE / "experiments").glob("*.py")):
        hits = [m.group(0)[:60] for m in written.finditer(path.read_text())]
        assert not hits, f"{path.name} declares a shared knob by hand: {hits}"


CHAPTER_NAMES = ("ch", "chapter")  # the names a chapter object goes by in the book


def chapter_reaches(path: Path) -> list[str]:
    """Where a module reaches into a chapter: a function parameter named `ch` / `chapter` or annotated with
    a `Chapter`, and every call of a chapter's claim methods (`.claim`, `.claim_count`, `.claim_difference`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, *[v for v in (a.vararg, a.kwarg) if v]]:
                annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                if arg.arg in CHAPTER_NAMES or "Chapter" in annotation:
                    found.append(
                        f"{path.name}:{node.lineno} {getattr(node, 'name', 'lambda')}({arg.arg}"
                        + (f": {annotation})" if annotation else ")")
                    )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and (node.func.attr == "claim" or node.func.attr.startswith("claim_"))
        ):
            found.append(f"{path.name}:{node.lineno} calls .{node.func.attr}")
    return found


def test_experiments_never_receive_a_chapter():
    """An experiment returns tables; the claims on them live in the book's chapter modules
    (memkd.book.chapters), so nothing under memkd/experiments takes a chapter or records a claim."""
    found = [hit for path in sorted((PACKAGE / "experiments").glob("*.py")) for hit in chapter_reaches(path)]
    assert found == []


def test_the_chapter_check_sees_a_chapter_parameter_and_a_claim_call(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def a(ch, table):\n    return table\n\n"
        "def b(table, *, chapter=None):\n    return table\n\n"
        "def c(book: 'Chapter', table):\n    return table\n\n"
        "def d(x, table):\n    x.claim_count('id', 'text', 1, 2, 0.5)\n    return x.claim('id', 'text', table)\n\n"
        "def fine(table, chapters_seen: int = 0):\n    return table.claims\n"
    )
    assert sorted(hit.split(" ", 1)[1] for hit in chapter_reaches(bad)) == [
        "a(ch)",
        "b(chapter)",
        "c(book: 'Chapter')",
        "calls .claim",
        "calls .claim_count",
    ]


README_ROWS = {  # a row of the README's table of floors -> the folders (under memkd/) whose modules it names
    "core": ("", "data", "models"),
    "`memkd.experiments`": ("experiments",),
    "`memkd.sweep`": ("sweep",),
    "`memkd.book`": ("book",),
}


def readme_floor_rows(text: str) -> dict[str, set[str]]:
    """{row: the names in backticks of its modules column} of the table of floors in README `text`."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[1] in README_ROWS:
            rows[cells[1]] = set(re.findall(r"`([\w.]+)`", cells[2]))
    return rows


def readme_mismatches(rows: dict[str, set[str]]) -> list[str]:
    """What the README's table of floors says that the folders do not hold, and the modules it leaves out."""
    out = [f"the README has no row {row}" for row in README_ROWS if row not in rows]
    for row, names in rows.items():
        on_disk = {
            p.stem
            for folder in README_ROWS[row]
            for p in (PACKAGE / folder).glob("*.py")
            if not p.stem.startswith("_") and p.stem != "cli"
        }
        named = {n.removeprefix("memkd.") for n in names if not n.endswith((".yml", ".yaml"))}
        chapters = {n for n in named if re.match(r"ch\d\d_", n)}
        out += [
            f"{row}: {n} is no module of memkd/book/chapters"
            for n in sorted(chapters)
            if not (PACKAGE / "book" / "chapters" / f"{n}.py").is_file()
        ]
        named -= chapters | {"data", "models", "chapters"}  # sub-packages, named beside their modules
        out += [f"{row}: the README names {n}, which is no module there" for n in sorted(named - on_disk)]
        out += [f"{row}: the README does not name {n}" for n in sorted(on_disk - named)]
    return out


def test_the_readme_table_of_floors_matches_the_folders():
    assert readme_mismatches(readme_floor_rows((PACKAGE.parent / "README.md").read_text())) == []


def test_the_readme_check_sees_a_stale_and_a_missing_module():
    rows = readme_floor_rows((PACKAGE.parent / "README.md").read_text())
    rows["`memkd.book`"] = (rows["`memkd.book`"] - {"report"}) | {"frontier"}
    found = readme_mismatches(rows)
    assert "`memkd.book`: the README names frontier, which is no module there" in found
    assert "`memkd.book`: the README does not name report" in found
