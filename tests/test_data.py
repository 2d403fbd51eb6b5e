"""memkd.data: the CIFAR-10 reader on a tiny archive in the official format, its errors and the image
shuffles (memkd.data.images); random vectors and their per-class split; modular-addition tokens."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import torch
import pytest

from memkd.data import images
from memkd.data.random_vectors import make_memorization_data, split_per_class
from memkd.data.tokens import all_pairs, make_modular_addition
from memkd.data.images import (
    ChecksumError,
    DatasetUnavailable,
    load_cifar10,
    load_images,
    md5sum,
    permute_pixels,
    shuffle_labels,
    shuffle_pixels,
    split_memorized,
)

PER_BATCH = 4  # images per batch in the tiny archive


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _batch(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"tiny",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"{seed}_{i}.png".encode() for i in range(n)],
    }


@pytest.fixture
def tiny_archive(tmp_path):
    """cifar-10-python.tar.gz with 5 train batches and a test batch of PER_BATCH images each."""
    batches = {f"data_batch_{i}": _batch(i, PER_BATCH) for i in range(1, 6)}
    batches["test_batch"] = _batch(99, PER_BATCH)
    batches["batches.meta"] = {
        b"label_names": [n.encode() for n in images.CIFAR10_CLASSES],
        b"num_cases_per_batch": PER_BATCH,
        b"num_vis": 3072,
    }
    path = tmp_path / images.CIFAR10_ARCHIVE
    with tarfile.open(path, "w:gz") as tar:
        for name, content in batches.items():
            raw = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{images.CIFAR10_FOLDER}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path, batches


def test_reads_the_official_format(tiny_archive):
    path, batches = tiny_archive
    train = load_cifar10(path.parent, "train", download=False, md5=md5sum(path), use_torchvision=False)
    assert train.x.shape == (5 * PER_BATCH, 3072) and train.x.dtype == np.uint8
    assert train.y.shape == (5 * PER_BATCH,) and train.y.dtype == np.int64
    expected_x = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    expected_y = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(train.x, expected_x)
    np.testing.assert_array_equal(train.y, expected_y)
    assert train.image_shape == (3, 32, 32) and train.class_names[0] == "airplane"
    test = load_cifar10(path, "test", md5=None, use_torchvision=False)
    np.testing.assert_array_equal(test.y, batches["test_batch"][b"labels"])


def test_checksum_failure_is_a_clear_error(tiny_archive):
    path, _ = tiny_archive  # its MD5 is not the published one
    with pytest.raises(ChecksumError, match=r"MD5 .* expected c58f30108f718f92721af3b95e74349a"):
        load_cifar10(path.parent, download=False, use_torchvision=False)


def test_missing_archive_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMKD_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetUnavailable) as err:
        load_cifar10(download=False, use_torchvision=False)
    message = str(err.value)
    assert str(tmp_path / "empty") in message and "MEMKD_DATA" in message
    assert images.CIFAR10_ARCHIVE in message and "digits" in message


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise images.urllib.error.URLError("no network")

    monkeypatch.setattr(images.urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetUnavailable, match="MEMKD_DATA"):
        load_cifar10(tmp_path, use_torchvision=False)
    assert not list(tmp_path.iterdir())  # no partial file left behind
    data, note = load_images("auto", root=tmp_path)  # auto falls back to the digits, with a note
    assert data.name == "digits" and "not run on CIFAR-10" in note


def test_shuffled_labels_keep_the_label_multiset():
    y = np.repeat(np.arange(10), 7)
    shuffled = shuffle_labels(y, seed=0)
    assert sorted(shuffled) == sorted(y) and (shuffled != y).any()


def test_pixel_shuffle_is_per_image_and_keeps_each_images_pixels():
    shape = (3, 4, 4)
    x = np.random.default_rng(0).integers(0, 256, (6, 48), dtype=np.uint8)
    out = shuffle_pixels(x, shape, seed=1)
    pixels = lambda a: a.reshape(len(a), 3, 16).transpose(0, 2, 1)  # (N, pixels, channels)
    for before, after in zip(pixels(x), pixels(out)):
        assert sorted(map(tuple, before)) == sorted(map(tuple, after))  # same RGB pixels
    assert (out != x).any()
    # each image got its own permutation: recover it from a ramp image
    ramp = np.tile(np.arange(16, dtype=np.uint8), (5, 3))  # (5, 48): pixel i has value i
    orders = shuffle_pixels(ramp, shape, seed=2)[:, :16]
    assert len({tuple(o) for o in orders}) == len(orders)


def test_fixed_permutation_is_one_permutation_for_all_images():
    shape = (1, 8, 8)
    x = np.tile(np.arange(64, dtype=np.uint8), (5, 1))
    out = permute_pixels(x, shape, seed=0)
    assert (out == out[0]).all() and not (out[0] == x[0]).all()
    assert sorted(out[0]) == list(range(64))


def test_memorized_split_is_balanced_and_disjoint():
    y = np.repeat(np.arange(10), 20)
    d, trivial = split_memorized(y, 0.8, seed=0)
    assert np.bincount(y[d]).tolist() == [16] * 10
    assert not set(d) & set(trivial) and len(d) + len(trivial) == len(y)
    d, trivial = split_memorized(y, 0.8, seed=0, per_class=8)
    assert np.bincount(y[d]).tolist() == [8] * 10 and np.bincount(y[trivial]).tolist() == [2] * 10


def test_torchvision_failure_becomes_a_clear_error(tmp_path, monkeypatch):
    """Where torchvision is installed (Colab) but cannot download, auto still falls back."""
    import sys
    import types

    def failing_cifar(root, train, download):
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")

    fake = types.ModuleType("torchvision.datasets")
    fake.CIFAR10 = failing_cifar
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake)
    with pytest.raises(DatasetUnavailable, match="torchvision: Dataset not found"):
        load_cifar10(tmp_path, use_torchvision=True, download=False)


# --- random vectors (memkd.data.random_vectors) ------------------------------------------------------


def test_data_is_balanced_in_range_and_deterministic():
    x, y = make_memorization_data(classes=7, per_class=9, input_dim=5, seed=3)
    assert x.shape == (63, 5) and y.shape == (63,) and y.dtype == torch.int64
    assert torch.bincount(y, minlength=7).tolist() == [9] * 7
    assert x.min() >= -1 and x.max() <= 1
    x2, y2 = make_memorization_data(classes=7, per_class=9, input_dim=5, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, y3 = make_memorization_data(classes=7, per_class=9, input_dim=5, seed=4)
    assert not torch.equal(x, x3)
    assert not torch.equal(y, torch.sort(y).values)  # labels come in random order


def test_gaussian_option_and_bad_distribution():
    x, _ = make_memorization_data(3, 200, 4, seed=0, distribution="gaussian")
    assert x.abs().max() > 1  # not confined to [-1, 1]
    with pytest.raises(ValueError, match="'distribution'"):
        make_memorization_data(3, 2, 4, seed=0, distribution="cauchy")


def test_split_is_exact_per_class_disjoint_and_deterministic():
    _, y = make_memorization_data(classes=5, per_class=10, input_dim=3, seed=1)
    tr, te = split_per_class(y, alpha=0.6, seed=2)
    assert torch.bincount(y[tr], minlength=5).tolist() == [6] * 5
    assert torch.bincount(y[te], minlength=5).tolist() == [4] * 5
    assert len(set(tr.tolist()) & set(te.tolist())) == 0 and len(tr) + len(te) == 50
    tr2, te2 = split_per_class(y, alpha=0.6, seed=2)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    with pytest.raises(ValueError, match="class .* every class needs"):
        split_per_class(y, alpha=0.01, seed=0)


# --- tokens (memkd.data.tokens) ------------------------------------------------------------------


def test_modular_addition_tokens():
    tokens, labels = all_pairs(5)
    assert tokens.shape == (25, 3) and labels.shape == (25,)
    assert (tokens[:, 2] == 5).all()  # "=" is token id k
    assert ((tokens[:, 0] + tokens[:, 1]) % 5 == labels).all()
    data = make_modular_addition(7, 0.4, seed=0)
    assert len(data.memorized) == round(0.4 * 49) and len(data.memorized) + len(data.outside) == 49
    assert not set(data.memorized) & set(data.outside)


def test_balanced_memorized_sets_hold_every_answer_equally_often():
    data = make_modular_addition(13, 0.6, seed=3, balanced=True)
    counts = torch.bincount(data.labels[data.memorized], minlength=13)
    assert (counts == round(0.6 * 13)).all() and len(data.memorized) + len(data.outside) == 169
    assert not set(data.memorized) & set(data.outside)
    with pytest.raises(ValueError, match=r"'fraction' parameter of make_modular_addition"):
        make_modular_addition(13, 0.99, balanced=True)
