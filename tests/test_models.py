"""memkd.models: every ensemble family's members equal plain single models (forward and gradients),
and a family rejects bad sizes naming them. Training through the protocol: tests/test_distillation.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from memkd.models.cnn import EnsembleCNN
from memkd.models.mlp import EnsembleMLP
from memkd.data.tokens import all_pairs
from memkd.models.transformer import EnsembleTransformer, Transformer, functional_forward

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
SHAPE = (1, 8, 8)  # the CNN tests' image shape (channels, height, width)


# --- MLPs (memkd.models.mlp) ---------------------------------------------------------------------


@pytest.mark.parametrize("hidden_layers,activation", [(1, "relu"), (2, "relu"), (2, "tanh"), (3, "linear")])
def test_member_equals_plain_module_forward_and_gradients(hidden_layers, activation):
    ens = EnsembleMLP(4, 6, 8, 3, hidden_layers=hidden_layers, activation=activation, seed=0).double()
    x = torch.randn(10, 6, dtype=torch.double)
    y = torch.randint(3, (10,))
    out = ens(x)
    assert out.shape == (4, 10, 3)
    F.cross_entropy(out.reshape(40, 3), y.repeat(4), reduction="sum").backward()
    for i in range(4):
        plain = ens.member(i).double()
        ref = plain(x)
        torch.testing.assert_close(out[i], ref)
        F.cross_entropy(ref, y, reduction="sum").backward()
        linears = [m for m in plain if isinstance(m, torch.nn.Linear)]
        for lin, w, b in zip(linears, ens.weights, ens.biases):
            torch.testing.assert_close(w.grad[i], lin.weight.grad.T)
            torch.testing.assert_close(b.grad[i, 0], lin.bias.grad)


def test_per_member_inputs_and_init_bounds():
    ens = EnsembleMLP(3, 5, 7, 2, seed=1)
    x = torch.randn(3, 4, 5)
    out = ens(x)
    for i in range(3):
        torch.testing.assert_close(out[i], ens.member(i)(x[i]))
    for w in ens.weights:
        bound = 1 / math.sqrt(w.shape[1])
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert not torch.equal(ens.weights[0][0], ens.weights[0][1])  # members are independent


# --- CNNs (memkd.models.cnn) ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["grouped", "vmap"])
def test_member_equals_plain_cnn_and_single_model_with_its_seed(backend):
    model = EnsembleCNN(3, SHAPE, 5, width=4, conv_layers=2, head_width=16, seed=10, backend=backend)
    x = torch.randn(3, 24, 64, generator=torch.Generator().manual_seed(0))  # (E, N, 1*8*8)
    out = model(x)
    shared = model(x[0])
    for i in range(3):
        single = EnsembleCNN(1, SHAPE, 5, width=4, conv_layers=2, head_width=16, seed=10 + i)
        torch.testing.assert_close(out[i], single(x[i])[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[i], model.member(i)(x[i]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shared[i], model.member(i)(x[0]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[0], model.member(1)(x[0]))  # members differ


def test_grouped_and_vmap_backends_agree_on_values_and_gradients():
    a = EnsembleCNN(4, (3, 8, 8), 3, width=4, conv_layers=3, head_width=8, seed=1, backend="grouped")
    b = EnsembleCNN(4, (3, 8, 8), 3, width=4, conv_layers=3, head_width=8, seed=1, backend="vmap")
    x = torch.randn(4, 10, 192)
    a(x).square().sum().backward()
    b(x).square().sum().backward()
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(width=0), "width"),
        (dict(conv_layers=4), "conv_layers"),
        (dict(head_width=-1), "head_width"),
        (dict(members=0), "members"),
        (dict(backend="fft"), "backend"),
        (dict(image_shape=(1, 6, 6)), "conv_layers"),
        (dict(seed=[1, 2]), "seed"),
        (dict(classes=1), "classes"),
    ],
)
def test_cnn_rejects_bad_knobs_naming_them(kwargs, name):
    args = dict(members=3, image_shape=SHAPE, classes=4, width=4, conv_layers=2, head_width=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        EnsembleCNN(**args)


# --- the transformer (memkd.models.transformer) -------------------------------------------------


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
