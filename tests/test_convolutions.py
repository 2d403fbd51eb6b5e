"""CNN ensembles trained through the one protocol, the convolution experiment and chapter 10 at smoke
(the CNN ensemble against single models: tests/test_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import execute_chapter_at_smoke
import torch

from memkd.models.cnn import CNNFamily, EnsembleCNN
from memkd.experiments.convolutions import convolutional_distillation as convolutions
from memkd.losses import soft_targets
from memkd.distillation import TeacherDidNotMemorize, predict, train_students, train_teacher

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "nbs" / "10_convolutions.ipynb"
SHAPE = (1, 8, 8)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _data(members: int, n: int = 24, classes: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(members, n, 64, generator=gen)
    logits = 3 * torch.randn(members, n, classes, generator=gen)
    return x, logits


@pytest.mark.parametrize(
    "kind,soften,batch", [("soft", False, None), ("soft", True, None), ("hard", False, None), ("soft", False, 8)]
)
def test_ensemble_members_train_like_separately_trained_single_cnns(kind, soften, batch):
    """Three members, each with its own data, targets, learning rate and temperature, trained for a
    few steps as one ensemble, equal the same three CNNs trained one by one with their seeds."""
    e, epochs = 3, 4
    x, logits = _data(e, classes=4)
    temps = torch.tensor([1.0, 2.0, 5.0])
    lrs = torch.tensor([1e-3, 3e-3, 1e-2])
    targets = soft_targets(logits, temps) if kind == "soft" else logits.argmax(-1)
    arch = dict(width=4, conv_layers=2, head_width=16)
    family = CNNFamily(SHAPE, 4, **arch)
    ens, _ = train_students(
        x,
        targets,
        kind=kind,
        family=family,
        members=e,
        lrs=lrs,
        epochs=epochs,
        temperatures=temps,
        soften_student=soften,
        batch_size=batch,
        seed=[7, 19, 3],
        shuffle_seed=5,
    )
    for i, s in enumerate([7, 19, 3]):
        one, _ = train_students(
            x[i : i + 1],
            targets[i : i + 1],
            kind=kind,
            family=family,
            members=1,
            lrs=lrs[i : i + 1],
            epochs=epochs,
            temperatures=temps[i : i + 1],
            soften_student=soften,
            batch_size=batch,
            seed=[s],
            shuffle_seed=5,
        )
        for pe, po in zip(ens.parameters(), one.parameters()):
            torch.testing.assert_close(pe[i], po[0], atol=2e-5, rtol=1e-4)
        before = EnsembleCNN(1, SHAPE, 4, seed=s, **arch)
        assert not torch.allclose(before.weights[1], one.weights[1])  # training moved it


def test_temperature_conventions_differ_only_when_the_student_is_softened():
    x, logits = _data(2)
    targets = soft_targets(logits, 4.0)
    tables = []
    for soften in (False, True):
        m, _ = train_students(
            x,
            targets,
            kind="soft",
            family=CNNFamily(SHAPE, 4, width=4, head_width=8),
            members=2,
            lrs=1e-2,
            epochs=3,
            temperatures=4.0,
            soften_student=soften,
        )
        tables.append(m(x).detach())
    assert not torch.allclose(tables[0], tables[1])


def test_teacher_budget_memorizes_or_raises():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 20, 64, generator=gen)
    y = torch.randint(0, 4, (2, 20), generator=gen)
    family = CNNFamily(SHAPE, 4, width=8, head_width=64)
    teacher = train_teacher(x, y, family, max_epochs=150, lr=1e-2)
    assert bool(teacher.memorized.all()) and teacher.epochs_run == 150
    assert ((teacher.epochs_to_memorize >= 1) & (teacher.epochs_to_memorize <= 150)).all()
    first = train_teacher(x, y, family, max_epochs=150, lr=1e-2, stop="first_perfect")
    assert bool(first.memorized.all()) and first.epochs_run <= 150
    assert torch.equal(first.epochs_to_memorize, teacher.epochs_to_memorize)  # the same path up to 100%
    with pytest.raises(TeacherDidNotMemorize, match="did not reach 100%.*teacher_stop='budget'"):
        train_teacher(x, y, CNNFamily(SHAPE, 4, width=1, head_width=1), max_epochs=2, lr=1e-4)
    model = teacher.model
    torch.testing.assert_close(predict(model, x, chunk=7), model(x))
    one = teacher.member(1)  # a one-member teacher with member 1's weights
    torch.testing.assert_close(one.logits(x[1]), model(x)[1:2])


def test_training_rejects_bad_kind_stop_and_shapes():
    m = EnsembleCNN(2, SHAPE, 4, width=4, head_width=8)
    family = CNNFamily(SHAPE, 4, width=4, head_width=8)
    x, logits = _data(2)
    with pytest.raises(ValueError, match="'kind' parameter"):
        train_students(x, logits, kind="similarity", family=family, members=2, lrs=1e-3, epochs=1)
    with pytest.raises(ValueError, match="'epochs' parameter"):
        train_students(x, logits.softmax(-1), kind="soft", family=family, members=2, lrs=1e-3, epochs=0)
    with pytest.raises(ValueError, match="'stop' parameter.*teacher_stop"):
        train_teacher(x, logits.argmax(-1), family, max_epochs=1, stop="early")
    with pytest.raises(ValueError, match="'family' parameter"):
        train_teacher(x, logits.argmax(-1), family, classes=4, width=8, max_epochs=1)
    with pytest.raises(ValueError, match=r"'x' parameter of EnsembleCNN.forward must have the shape \(N, 64\)"):
        m(torch.randn(5, 63))


# ---------------------------------------------------------------------------- the experiment
def test_experiment_validates_up_front():
    with pytest.raises(ValueError, match="'teachers' parameter of convolutional_distillation"):
        convolutions("smoke", teachers=0)
    with pytest.raises(ValueError, match="'pairs' parameter"):
        convolutions("smoke", pairs=("cnn->transformer",))
    with pytest.raises(ValueError, match="'settings' parameter"):
        convolutions("smoke", settings=("clean", "clean"))
    with pytest.raises(ValueError, match="'alpha' parameter"):
        convolutions("smoke", alpha=0.01)
    with pytest.raises(ValueError, match="unknown parameter"):
        convolutions("smoke", width=3)
    with pytest.raises(ValueError, match="'profile' parameter"):
        convolutions("huge")


def test_experiment_mini_batches_and_chunks_run():
    """The paper profile's path: mini-batch teachers and students, ensembles in chunks."""
    table = convolutions(
        "smoke",
        settings=("labels",),
        teachers=3,
        students=1,
        cnn_teacher_epochs=150,
        mlp_teacher_epochs=100,
        teacher_batch_size=50,
        epochs=3,
        batch_size=25,
        chunk=2,
        device="cpu",
    )
    assert len(table) == 3 * 4 and table.train_acc.between(0, 1).all()
    assert table.attrs["config"]["teacher_batch_size"] == 50


def test_experiment_rows_units_and_config():
    table = convolutions(
        "smoke",
        settings=("clean", "fixed", "labels"),
        teachers=2,
        students=2,
        cnn_teacher_epochs=120,
        mlp_teacher_epochs=200,
        epochs=10,
        chunk=5,
        device="cpu",
    )
    assert len(table) == 3 * 2 * 4 * 2  # settings x teachers x pairs x students
    assert set(table.pair) == {"cnn->cnn", "mlp->mlp", "cnn->mlp", "mlp->cnn"}
    assert set(table.dataset) == {0, 1} and table.images.iloc[0] == "digits"
    assert table.groupby(["setting", "pair", "dataset"]).size().eq(2).all()
    assert (table.leak == table.test_acc - table.independent_acc).all()
    assert table[["train_acc", "test_acc", "independent_acc"]].stack().between(0, 1).all()
    # the clean and fixed units hold the same images: the teacher's trivial accuracy of the MLP
    # (blind to a fixed permutation of its inputs only up to training noise) is defined on both
    assert table.teacher_independent_acc.between(0, 1).all()
    config = table.attrs["config"]
    assert config["teachers"] == 2 and config["settings"] == ("clean", "fixed", "labels")
    json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in config.items()})


# ---------------------------------------------------------------------------- the chapter
@pytest.mark.slow
def test_chapter_executes_at_smoke(tmp_path):
    results = execute_chapter_at_smoke(NOTEBOOK, tmp_path)
    table = pd.read_csv(results / "table.csv")
    assert set(table.setting) == {"clean", "labels", "pixels", "both", "fixed"}
    assert table.groupby("setting").dataset.nunique().min() >= 3
    claims = pd.read_csv(results / "claims.csv")
    assert len(claims) >= 12 and claims["verdict"].isin(["holds", "does not hold", "inconclusive"]).all()
    assert (claims["data"] == "stand-in").all() and claims["beyond_paper"].all()
    assert (claims.loc[claims.expect == "equivalent", "margin"] > 0).all()
    assert (results / "meta.json").is_file() and (results / "table.config.json").is_file()
    assert len(list(results.glob("*.png"))) >= 2
