"""One cross-entropy, one softening rule, one sigma_T in the package (counted on its syntax trees).

A definition is a function whose own body (nested functions counted apart) does the thing:
- cross-entropy: normalizes logits to log-probabilities (`log_softmax`, `cross_entropy`, `nll_loss`
  or `logsumexp`);
- softening of the student: such a function that also divides (or multiplies) by a temperature;
- sigma_T: a `softmax` in a function that divides logits by a temperature.
`memkd.losses` holds one of each. The only other is `memkd.models.fused_mlp.FusedCrossEntropy`, the
MLP's hand-written gradient (no autograd: it cannot call a loss), tested equal to `memkd.losses`
(tests/test_core.py); `memkd.defences` re-tempers the server's probabilities (softmax(log q / t), a
defence on the teacher's answer, not sigma_T of its logits) and is left out of the sigma_T count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "memkd"
CORE = [
    p
    for p in sorted(PACKAGE.rglob("*.py"))
    if p.relative_to(PACKAGE).parts[0] not in ("experiments", "sweep", "book", "cli.py", "__main__.py")
]
NORMALIZERS = {"log_softmax", "cross_entropy", "nll_loss", "logsumexp"}
TEMPERATURE = re.compile(r"^(self\.)?(t|temps?|temperatures?|inv_t)\b")  # t, t.view(...), temperature.to(...)
EXPECTED = {
    "cross_entropy": {
        "losses.py:soft_cross_entropy",
        "losses.py:hard_cross_entropy",
        "models/fused_mlp.py:FusedCrossEntropy._loss_and_logit_gradient",
    },
    "softening": {"losses.py:soft_cross_entropy", "models/fused_mlp.py:FusedCrossEntropy._loss_and_logit_gradient"},
    "sigma_T": {"losses.py:soft_targets"},
}


def own_nodes(fn: ast.AST):
    """The nodes of a function's body, without those of the functions defined inside it."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def called(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    return None


def by_temperature(node: ast.AST) -> bool:
    """`x / t` (t a temperature), or torch.mul(x, inv_t) / x * inv_t."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Mult)):
        return bool(TEMPERATURE.match(ast.unparse(node.right)))
    if called(node) in ("mul", "div"):
        return any(TEMPERATURE.match(ast.unparse(a)) for a in node.args[1:2])
    return False


def definitions(files=CORE, root=PACKAGE) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"cross_entropy": set(), "softening": set(), "sigma_T": set()}
    for path in files:
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            names, node = [fn.name], parents.get(fn)
            while node is not None:
                if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                    names.insert(0, node.name)
                node = parents.get(node)
            where = f"{path.relative_to(root).as_posix()}:{'.'.join(n for n in names if n)}"
            nodes = list(own_nodes(fn))
            normalizes = any(called(n) in NORMALIZERS for n in nodes)
            tempers = any(by_temperature(n) for n in nodes)
            softmax_of_tempered = tempers and any(called(n) == "softmax" for n in nodes)
            if normalizes:
                found["cross_entropy"].add(where)
            if normalizes and tempers:
                found["softening"].add(where)
            if softmax_of_tempered and not path.name == "defences.py":
                found["sigma_T"].add(where)
    return found


def test_one_cross_entropy_one_softening_one_sigma_t():
    assert definitions() == EXPECTED


def test_the_count_sees_a_second_definition(tmp_path):
    """The counter itself: a model's own loop with its own loss, softening and sigma_T is found."""
    (tmp_path / "models").mkdir()
    own = tmp_path / "models" / "own.py"
    own.write_text(
        "import torch\n"
        "def train(z, p, t):\n"
        "    def objective(_):\n"
        "        log_q = torch.log_softmax(z / t, dim=-1)\n"
        "        return -(p * log_q).sum(-1)\n"
        "    return objective\n"
        "def labels(z, temperature):\n"
        "    scaled = (z / temperature.view(-1, 1, 1)).to(torch.float32)\n"
        "    return torch.softmax(scaled, dim=-1)\n"
    )
    found = definitions([own], tmp_path)
    assert found == {
        "cross_entropy": {"models/own.py:train.objective"},
        "softening": {"models/own.py:train.objective"},
        "sigma_T": {"models/own.py:labels"},
    }


def test_a_mask_averages_each_member_over_its_own_points():
    """With a per-member mask, each member's loss is the plain loss on its own points alone; padding
    labels (-1) outside the mask are not read."""
    import torch

    from memkd.losses import hard_cross_entropy, soft_cross_entropy, soft_targets

    gen = torch.Generator().manual_seed(0)
    z, teacher = torch.randn(3, 7, 4, generator=gen), torch.randn(3, 7, 4, generator=gen)  # (E, N, C)
    probs = soft_targets(teacher, torch.tensor([1.0, 2.0, 5.0]))
    labels = torch.randint(0, 4, (3, 7), generator=gen)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    padded = labels.masked_fill(~mask, -1)
    soft = soft_cross_entropy(z, probs, torch.tensor([1.0, 2.0, 5.0]), True, mask=mask)
    hard = hard_cross_entropy(z, padded, mask=mask)
    for e in range(3):
        own = mask[e]
        alone = soft_cross_entropy(z[e : e + 1, own], probs[e : e + 1, own], torch.tensor([[1.0, 2.0, 5.0][e]]), True)
        assert torch.allclose(soft[e : e + 1], alone)
        assert torch.allclose(hard[e : e + 1], hard_cross_entropy(z[e : e + 1, own], labels[e : e + 1, own]))
    assert not torch.allclose(soft, soft_cross_entropy(z, probs, torch.tensor([1.0, 2.0, 5.0]), True))


def test_soft_targets_keep_the_precision_asked_for():
    """sigma_T in bfloat16 rounds z / T (computed in the logits' float64) before the softmax."""
    import torch

    from memkd.losses import soft_targets

    z = torch.randn(2, 1, 5, 3, dtype=torch.float64)  # (K, 1, N, C)
    t = torch.tensor([[1.0, 10.0], [2.0, 20.0]])  # (K, M)
    p = soft_targets(z, t, torch.bfloat16)
    assert p.dtype == torch.bfloat16 and p.shape == (2, 2, 5, 3)
    expected = torch.softmax((z / t.double().view(2, 2, 1, 1)).to(torch.bfloat16), dim=-1)
    assert torch.equal(p, expected)
    assert torch.equal(soft_targets(z, t)[1, 1], torch.softmax(z[1, 0] / 20.0, dim=-1))


ALIASES = {"temps", "temp", "inv_t", "inv_temperature"}  # the temperature's old local names


def temperature_aliases(files, root=PACKAGE) -> list[str]:
    """Where a name, parameter or attribute of `files` is one of ALIASES: the temperature goes by
    `temperatures` (a knob, a grid) and `temperature` (one value or a per-member tensor) only."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            name = (
                node.id
                if isinstance(node, ast.Name)
                else node.arg
                if isinstance(node, ast.arg)
                else node.attr
                if isinstance(node, ast.Attribute)
                else None
            )
            if name in ALIASES:
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno} {name}")
    return found


def test_the_temperature_goes_by_two_names_from_the_knob_to_the_loss():
    """The core and the experiments (the knob's way to the loss) name it `temperatures` or `temperature`."""
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in ("book", "sweep")]
    assert temperature_aliases(files) == []


def test_the_alias_check_sees_an_old_name(tmp_path):
    own = tmp_path / "own.py"
    own.write_text("def f(temperatures, inv_t=None):\n    temps = temperatures\n    self.temp = temps\n")
    assert temperature_aliases([own], tmp_path) == [
        "own.py:1 inv_t",
        "own.py:2 temps",
        "own.py:3 temp",
        "own.py:3 temps",
    ]
