"""memkd.tokens and memkd.transformer: data, the batched ensemble against single models, memorizing."""

from __future__ import annotations

import pytest
import torch

from memkd.tokens import all_pairs, make_modular_addition
from memkd.transformer import (
    EnsembleTransformer, Transformer, TransformerDidNotMemorize, functional_forward,
    train_transformer_students, train_transformer_teacher,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_modular_addition_tokens():
    tokens, labels = all_pairs(5)
    assert tokens.shape == (25, 3) and labels.shape == (25,)
    assert (tokens[:, 2] == 5).all()  # "=" is token id k
    assert ((tokens[:, 0] + tokens[:, 1]) % 5 == labels).all()
    data = make_modular_addition(7, 0.4, seed=0)
    assert len(data.memorized) == round(0.4 * 49) and len(data.memorized) + len(data.outside) == 49
    assert not set(data.memorized) & set(data.outside)


def test_forward_shape():
    model = EnsembleTransformer(3, modulus=7, d_model=32, heads=4, d_mlp=64)
    tokens, _ = all_pairs(7)
    assert model(tokens).shape == (3, 49, 7)  # (E, N, K)


def test_ensemble_members_equal_plain_single_models():
    torch.manual_seed(0)
    model = EnsembleTransformer(4, modulus=11, d_model=64, heads=4, d_mlp=128, seed=3)
    with torch.no_grad():  # non-zero biases so that they are checked too
        model.b_in.normal_(), model.b_out.normal_()
    tokens, _ = all_pairs(11)
    out = model(tokens)
    for i in range(4):
        single = model.member(i)
        assert isinstance(single, Transformer)
        torch.testing.assert_close(out[i], single(tokens), rtol=1e-5, atol=1e-5)
    # the same maths vmapped over unbatched parameters
    batched = torch.func.vmap(functional_forward, in_dims=(0, None))(dict(model.named_parameters()), tokens)
    torch.testing.assert_close(batched, out, rtol=1e-5, atol=1e-5)
    # members differ from each other (independent initialisations)
    assert not torch.allclose(out[0], out[1])


def test_teacher_memorizes_a_tiny_modulus_and_students_fit_it():
    data = make_modular_addition(11, 0.6, seed=0)
    x, y = data.tokens[data.memorized], data.labels[data.memorized]
    teacher = train_transformer_teacher(x, y, modulus=11, max_epochs=1000, d_model=32, d_mlp=64)
    assert teacher.train_acc == 1.0 and 0 < teacher.epochs_to_memorize < 1000
    students, history = train_transformer_students(
        x, teacher.logits(x), modulus=11, members=2, temperatures=[1.0, 5.0], lrs=3e-3, epochs=300,
        d_model=32, d_mlp=64)
    with torch.no_grad():
        acc = (students(x).argmax(-1) == y).float().mean(-1)
    assert acc.shape == (2,) and (acc > 0.9).all()
    assert set(history["member"]) == {0, 1}


def test_teacher_that_cannot_memorize_raises_with_the_accuracy():
    data = make_modular_addition(11, 0.6, seed=0)
    x, y = data.tokens[data.memorized], data.labels[data.memorized]
    with pytest.raises(TransformerDidNotMemorize, match=r"reached \d+\.\d+% .* not 100%"):
        train_transformer_teacher(x, y, modulus=11, max_epochs=2, d_model=32, d_mlp=64)


def test_transformer_distillation_validates_up_front():
    from memkd.experiments.beyond import transformer_distillation

    with pytest.raises(ValueError, match=r"'modulus' parameter of transformer_distillation must be an int >= 3"):
        transformer_distillation("smoke", modulus=2)
    with pytest.raises(ValueError, match=r"'heads' parameter .* must divide d_model=32"):
        transformer_distillation("smoke", heads=5)
    with pytest.raises(ValueError, match=r"'temperatures' parameter .* Got \(0\.0,\)"):
        transformer_distillation("smoke", temperatures=(0.0,))


def test_transformer_distillation_smoke_rows():
    from memkd.experiments.beyond import transformer_distillation

    table = transformer_distillation("smoke", students=1)
    assert len(table) == 2 and list(table["temperature"]) == [1.0, 10.0]
    for column in ("train_acc", "test_acc", "independent_acc", "teacher_independent_acc", "chance"):
        assert table[column].between(0, 1).all()
    assert (table["chance"] == 1 / 13).all() and (table["teacher_epochs"] > 0).all()
