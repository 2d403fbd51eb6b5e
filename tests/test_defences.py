"""Server-side defences (memkd.defences), the teacher-side knobs (label smoothing, weight decay in
train_teacher) and the audit of a model defined outside memkd (memkd.audit)."""

from __future__ import annotations

import math

import pytest
import torch

import memkd
from memkd.defences import Answer, Defence, LabelOnly, Noise, Round, Temperature, TopK, parse
from memkd.distillation import train_teacher

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


# --- the transforms -----------------------------------------------------------------------------


def test_no_defence_serves_the_softmax_and_targets_are_sigma_t():
    z = logits(2, 7, 5)
    a = Defence().apply(z)
    assert a.returned.all() and torch.allclose(a.probs, torch.softmax(z, -1))
    assert torch.allclose(a.targets(4.0), torch.softmax(z / 4.0, -1))  # the student's sigma_T of the logits


def test_top_k_returns_k_entries_and_spreads_the_rest_uniformly():
    z = logits(3, 6, 8)
    a = TopK(3).apply(z)
    assert a.returned.sum(-1).eq(3).all()
    p = torch.softmax(z, -1)
    q = a.completed()
    assert torch.allclose(q.sum(-1), torch.ones(3, 6, dtype=torch.float64))
    assert torch.allclose(q[a.returned], p[a.returned])  # returned entries keep their served values
    withheld = q.masked_fill(a.returned, math.nan)
    rest = (1 - p.masked_fill(~a.returned, 0).sum(-1)) / 5
    assert torch.allclose(torch.nan_to_num(withheld, nan=0).max(-1).values, rest)
    assert torch.allclose(torch.nan_to_num(withheld, nan=1).min(-1).values, rest)


def test_top_k_keeps_the_order_of_the_returned_classes_and_k_equal_c_changes_nothing():
    z = logits(4, 10)
    assert torch.equal(TopK(10).apply(z).completed(), Defence().apply(z).completed())
    q = TopK(1).apply(z).completed()
    assert torch.equal(q.argmax(-1), z.argmax(-1))


def test_binary_top_one_returns_everything():
    z = logits(5, 2)
    assert torch.allclose(TopK(1).apply(z).completed(), torch.softmax(z, -1))


def test_rounding_probabilities_and_log_probabilities():
    z = logits(20, 6)
    p = torch.softmax(z, -1)
    a = Round(2).apply(z)
    assert torch.allclose(a.probs, torch.round(p * 100) / 100)
    assert (a.probs - p).abs().max() <= 0.005 + 1e-12
    b = Round(1, of="logprob").apply(z)
    assert (b.probs.log() - p.log()).abs().max() <= 0.05 + 1e-12
    assert torch.equal(Round(0).apply(z).completed().argmax(-1) >= 0, torch.ones(20, dtype=torch.bool))


def test_many_decimals_change_little_and_zero_decimals_change_much():
    z = logits(50, 4)
    p = torch.softmax(z, -1)
    fine = (Round(8).apply(z).completed() - p).abs().max()
    coarse = (Round(1).apply(z).completed() - p).abs().max()
    assert fine < 1e-7 < 1e-3 < coarse


def test_label_only_is_one_hot_at_any_student_temperature():
    z = logits(3, 9, 4)
    a = LabelOnly().apply(z)
    one_hot = torch.nn.functional.one_hot(z.argmax(-1), 4).double()
    assert torch.equal(a.targets(1.0), one_hot) and torch.equal(a.targets(20.0), one_hot)


def test_server_temperature_divides_the_logits():
    z = logits(6, 5)
    assert torch.allclose(Temperature(3.0).apply(z).probs, torch.softmax(z / 3.0, -1))


def test_noise_is_seeded_per_member_and_zero_noise_is_nothing():
    z = logits(2, 30, 5)
    a, b = Noise(1.0).apply(z, seed=[1, 2]), Noise(1.0).apply(z, seed=[1, 2])
    assert torch.equal(a.probs, b.probs) and not torch.allclose(a.probs, torch.softmax(z, -1))
    one = Noise(1.0).apply(z[:1], seed=[1])  # the first member's draw does not depend on the others
    assert torch.equal(one.probs[0], a.probs[0])
    assert torch.allclose(Noise(0.0).apply(z).probs, torch.softmax(z, -1))
    spread = Noise(2.0).apply(z, seed=[3, 4]).probs.log() - torch.softmax(z, -1).log()
    centred = spread - spread.mean(-1, keepdim=True)
    assert 1.0 < float(centred.std()) < 3.0  # about sigma * sqrt(1 - 1/C)


def test_composition_applies_left_to_right_and_reads_back_from_one_line():
    d = TopK(5) | Round(2, of="logprob")
    assert d == parse("top5|logprob_round2") and d.spec() == "top5|logprob_round2"
    assert parse(d.spec()) == d and parse("none") == Defence() and parse(TopK(2)) == Defence((TopK(2),))
    assert parse("temp4|noise0.5|top1|round3").spec() == "temp4|noise0.5|top1|round3"
    assert (Temperature(2.0) | Noise(0.1)) | (TopK(3) | LabelOnly()) == parse("temp2|noise0.1|top3|label")
    z = logits(10, 12)
    a = d.apply(z)
    p = torch.softmax(z, -1)
    top = p.topk(5, -1).indices
    assert torch.equal(a.returned, torch.zeros_like(a.returned).scatter(-1, top, True))
    served = torch.exp(torch.round(p.log() * 100) / 100)
    assert torch.allclose(a.probs[a.returned], served[a.returned])


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: TopK(0), "k"),
        (lambda: TopK(2.5), "k"),
        (lambda: Round(-1), "decimals"),
        (lambda: Round(2, of="logit"), "of"),
        (lambda: Noise(-0.1), "sigma"),
        (lambda: Temperature(0.0), "t"),
        (lambda: parse("top0"), "k"),
        (lambda: parse("round-1"), "decimals"),
        (lambda: parse("top1x"), "spec"),
        (lambda: parse("blur3"), "spec"),
        (lambda: parse(3), "spec"),
        (lambda: Round(2) | Noise(1.0), "steps"),
        (lambda: TopK(6).apply(logits(2, 5)), "k"),
    ],
)
def test_bad_defences_are_refused_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=rf"^The '{name}' parameter of "):
        make()


def test_completed_answer_with_everything_rounded_away_is_uniform():
    a = Answer(torch.zeros(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.bool))
    assert torch.allclose(a.completed(), torch.full((1, 4), 0.25, dtype=torch.float64))


# --- teacher-side defences ----------------------------------------------------------------------


def _random_data(seed=0, n=40, d=20, c=4):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=gen) * 2 - 1, torch.arange(n) % c


def test_label_smoothing_caps_the_teachers_confidence_fused_or_not():
    x, y = _random_data()
    kw = dict(classes=4, width=32, max_epochs=300, lr=3e-3, seed=1)
    plain = train_teacher(x, y, **kw)
    fused = train_teacher(x, y, label_smoothing=0.2, **kw)
    loop = train_teacher(x, y, label_smoothing=0.2, fused=False, **kw)
    top = lambda t: torch.softmax(t.logits(x), -1).max(-1).values.mean()  # noqa: E731
    assert plain.memorized.all() and fused.memorized.all()
    assert top(plain) > 0.95 and abs(float(top(fused)) - 0.85) < 0.03  # optimum: 1 - 0.2 + 0.2 / 4
    assert torch.allclose(fused.logits(x), loop.logits(x), atol=1e-3)


def test_weight_decay_shrinks_the_teacher_and_bad_knobs_are_refused():
    x, y = _random_data(1)
    kw = dict(classes=4, width=32, max_epochs=300, lr=3e-3, seed=1, require_memorization=False)
    norm = lambda t: float(t.logits(x).norm())  # noqa: E731
    assert norm(train_teacher(x, y, weight_decay=1e-2, **kw)) < norm(train_teacher(x, y, **kw))
    for knob, bad in [("label_smoothing", 1.0), ("label_smoothing", -0.1), ("weight_decay", -1.0)]:
        with pytest.raises(ValueError, match=rf"^The '{knob}' parameter of train_teacher"):
            train_teacher(x, y, **{**kw, knob: bad})


# --- the audit, on a model defined here ---------------------------------------------------------


class Memorizer(torch.nn.Module):
    """A plain torch MLP, trained here (outside memkd) to memorize random labels."""

    def __init__(self, d: int, c: int, width: int = 64, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, c),
        )

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def memorized():
    """Two models (two seeds) memorizing 200 random points (d = 100, C = 10), with their data."""
    gen = torch.Generator().manual_seed(5)
    x, y = torch.rand(200, 100, generator=gen) * 2 - 1, torch.randperm(200, generator=gen) % 10
    models = []
    for seed in (0, 1):
        net = Memorizer(100, 10, seed=seed)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(150):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        assert (net(x).argmax(-1) == y).all()
        models.append(net.eval())
    return models, x, y


def test_audit_runs_on_a_torch_model_and_returns_its_documented_columns(memorized):
    models, x, y = memorized
    table = memkd.audit(
        models[0], x, y, ["none", "top1", TopK(2) | Round(1)], repeats=2, students=2, epochs=20, width=32
    )
    assert len(table) == 1 * 2 * 3 * 2
    assert list(table.columns) == list(memkd.audits.AuditConfig.TABLE_COLUMNS)
    assert set(table.defence) == {"none", "top1", "top2|round1"} and table.teacher_id.nunique() == 2
    assert table[["train_acc", "test_acc", "independent_acc", "fidelity"]].apply(lambda s: s.between(0, 1).all()).all()
    assert (table.leak == table.test_acc - table.independent_acc).all() and (table.fresh_source == "drawn").all()
    for column in memkd.audits.AuditConfig.TABLE_COLUMNS:
        assert column in memkd.audit.__doc__ and column in memkd.audits.AUDIT_COLUMNS
    assert "repeats" in memkd.audit.__doc__ and "temperature" in memkd.audit.__doc__
    again = memkd.audit(
        models[0], x, y, ["none", "top1", TopK(2) | Round(1)], repeats=2, students=2, epochs=20, width=32
    )
    assert again.equals(table)  # seeded


def test_audit_finds_the_leak_and_label_only_removes_it(memorized):
    models, x, y = memorized
    fresh_x, fresh_y = torch.rand(500, 100) * 2 - 1, torch.randint(10, (500,))
    table = memkd.audit(
        models,
        x,
        y,
        ["none", "label"],
        repeats=1,
        students=2,
        epochs=100,
        width=64,
        temperature=20.0,
        lr=1e-2,
        fresh_inputs=fresh_x,
        fresh_labels=fresh_y,
    )
    assert table.teacher_id.nunique() == 2 and (table.fresh_source == "given").all()  # models are the unit
    leak = table.groupby("defence").leak.mean()
    assert leak["none"] > 0.1 and abs(leak["label"]) < 0.1 and leak["none"] > leak["label"] + 0.1
    assert table.groupby("defence").fidelity.mean()["none"] > table.groupby("defence").fidelity.mean()["label"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(defences=["top0"]), "k"),
        (dict(defences=["top11"]), "k"),
        (dict(defences=["round-2"]), "decimals"),
        (dict(defences=["top5|logprob_round-1"]), "decimals"),
        (dict(defences=["noise-1"]), "sigma"),
        (dict(defences=[Round(2, of="prob")], alpha=1.5), "alpha"),
        (dict(defences=["noise0.1"], repeats=0), "repeats"),
        (dict(defences="none"), "defences"),
        (dict(defences=[]), "defences"),
        (dict(wobble=1), "wobble"),
        (dict(labels=torch.arange(199) % 10), "labels"),
        (dict(labels=torch.arange(200) % 12), "labels"),
        (dict(model_fn=lambda x: x[:, :10][:-1]), "model_fn"),
        (dict(model_fn=lambda x: x.sum(-1)), "model_fn"),
        (dict(model_fn="net"), "model_fn"),
        (dict(fresh_inputs=torch.rand(10, 3)), "fresh_inputs"),
    ],
)
def test_audit_refuses_bad_input_before_any_training(memorized, monkeypatch, kwargs, name):
    import memkd.audits

    def no_training(*a, **k):
        raise AssertionError("a student was trained")

    monkeypatch.setattr(memkd.audits, "train_students", no_training)
    models, x, y = memorized
    args = {**dict(model_fn=models[0], inputs=x, labels=y, defences=["none"]), **kwargs}
    with pytest.raises(ValueError, match=rf"^The '{name}' parameter of "):
        memkd.audit(**args)


def test_the_docstring_examples_run():
    """The audit's example (a torch model defined outside memkd) and the defences' examples, as doctests."""
    import doctest

    import memkd.audits
    import memkd.defences

    for module in (memkd.audits, memkd.defences):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
