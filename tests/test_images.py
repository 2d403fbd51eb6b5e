"""memkd.data.images: the CIFAR-10 reader on a tiny archive in the official format, errors, shuffles."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import torch
import pytest

from memkd.data import images
from memkd.data.images import (
    ChecksumError, DatasetUnavailable, load_cifar10, load_images, md5sum, permute_pixels,
    shuffle_labels, shuffle_pixels, split_memorized,
)

PER_BATCH = 4  # images per batch in the tiny archive


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _batch(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"tiny", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"{seed}_{i}.png".encode() for i in range(n)]}


@pytest.fixture
def tiny_archive(tmp_path):
    """cifar-10-python.tar.gz with 5 train batches and a test batch of PER_BATCH images each."""
    batches = {f"data_batch_{i}": _batch(i, PER_BATCH) for i in range(1, 6)}
    batches["test_batch"] = _batch(99, PER_BATCH)
    batches["batches.meta"] = {b"label_names": [n.encode() for n in images.CIFAR10_CLASSES],
                               b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072}
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


def test_cifar_shuffles_validates_up_front():
    from memkd.experiments.cifar import cifar_shuffles

    with pytest.raises(ValueError, match=r"'dataset' parameter of cifar_shuffles must be one of"):
        cifar_shuffles("smoke", dataset="mnist")
    with pytest.raises(ValueError, match=r"'alphas' parameter of cifar_shuffles .* Got \(1\.5,\)"):
        cifar_shuffles("smoke", alphas=(1.5,))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['widht'\]"):
        cifar_shuffles("smoke", widht=3)
    with pytest.raises(ValueError, match=r"'settings' parameter .* Got \('clean', 'noise'\)"):
        cifar_shuffles("smoke", settings=("clean", "noise"))


def test_cifar_shuffles_smoke_on_digits():
    from memkd.experiments.cifar import cifar_shuffles

    table = cifar_shuffles("smoke", settings=("clean", "labels"), students=2)
    assert len(table) == 2 * 3 * 2 and set(table["setting"]) == {"clean", "labels"}
    assert sorted(set(table["dataset"])) == [0, 1, 2]  # three teachers per setting
    assert (table["images"] == "digits").all() and (table["chance"] == 0.1).all()
    assert set(table["teacher_stop"]) == {"budget"} and (table["teacher_epochs_run"] == 300).all()
    labels = table[table["setting"] == "labels"]
    assert labels["teacher_independent_acc"].max() < 0.3  # shuffled labels: nothing to generalize
    assert (labels["train_acc"] > 0.9).all()  # the students fit their part of D
    clean = table[table["setting"] == "clean"]
    assert (clean["test_acc"] > 0.8).all()
    assert table.attrs["config"]["teachers"] == 3 and table.attrs["config"]["experiment"] == "cifar_shuffles"


def test_teachers_of_a_setting_are_independent_and_paired_across_settings():
    """Teacher k's draw depends on k: different k, different images; the same k in clean and
    fixed holds the same images and labels (only the pixel order differs)."""
    from memkd.config import make_config
    from memkd.experiments.cifar import ImageShuffleConfig, prepare_images, shuffled_task

    cfg = make_config(ImageShuffleConfig, "cifar_shuffles", "smoke", {})
    data, _ = prepare_images(cfg)
    cpu = torch.device("cpu")
    x0, y0, *_ = shuffled_task(data, "clean", cfg, cpu, 0)
    x1, y1, *_ = shuffled_task(data, "clean", cfg, cpu, 1)
    xf, yf, *_ = shuffled_task(data, "fixed", cfg, cpu, 0)
    xl, yl, *_ = shuffled_task(data, "labels", cfg, cpu, 0)
    xb, yb, *_ = shuffled_task(data, "both", cfg, cpu, 0)
    assert not torch.equal(x0, x1)
    same_pixels = lambda a, b: torch.allclose(a.sort(dim=1).values, b.sort(dim=1).values, atol=1e-5)
    assert torch.equal(y0, yf) and same_pixels(x0, xf) and not torch.allclose(x0, xf)
    assert torch.equal(yl, yb) and same_pixels(xl, xb) and not torch.equal(y0, yl)
    assert np.bincount(y0.numpy()).tolist() == [30] * 10


def test_cifar_shuffles_stacked_units_equal_fewer_units():
    """A setting's students get the same numbers whether other settings' teachers and students
    train in the same ensembles or not (stacking changes the speed, not the numbers)."""
    from memkd.experiments.cifar import cifar_shuffles

    kw = dict(students=1, epochs=30, teacher_epochs=150)
    two = cifar_shuffles("smoke", settings=("clean", "labels"), **kw)
    one = cifar_shuffles("smoke", settings=("labels",), **kw)
    key = ["dataset", "alpha", "student"]
    a = two[two["setting"] == "labels"].set_index(key).sort_index()
    b = one.set_index(key).sort_index()
    assert len(a) == len(b) == 3
    for column in ("train_acc", "test_acc", "independent_acc", "teacher_independent_acc"):
        np.testing.assert_allclose(a[column], b[column], atol=1.5 / 120)  # at most a sample flips


def test_cifar_shuffles_teacher_stop_is_a_knob():
    from memkd.experiments.cifar import cifar_shuffles

    with pytest.raises(ValueError, match=r"'teacher_stop' parameter of cifar_shuffles must be one of"):
        cifar_shuffles("smoke", teacher_stop="early")
    early = cifar_shuffles("smoke", settings=("clean",), students=1, epochs=5, teacher_stop="first_perfect")
    assert set(early["teacher_stop"]) == {"first_perfect"} and (early["teacher_epochs_run"] < 300).all()
    from memkd.distillation import TeacherDidNotMemorize

    with pytest.raises(TeacherDidNotMemorize, match=r"after 3 epochs \(teacher_stop='budget'"):
        cifar_shuffles("smoke", settings=("labels",), students=1, epochs=5, teacher_epochs=3)


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


def test_cifar_shuffles_runs_on_an_extracted_cifar_folder(tmp_path):
    """The CIFAR-10 branch of the experiment, end to end, on a tiny extracted folder."""
    from memkd.experiments.cifar import cifar_shuffles

    folder = tmp_path / images.CIFAR10_FOLDER
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate([*images.CIFAR10_TRAIN_BATCHES, "test_batch"]):
        labels = [int(v) for v in np.repeat(np.arange(10), 2)]  # 2 per class per batch
        batch = {b"labels": labels, b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    table = cifar_shuffles("smoke", dataset="cifar10", data_root=str(tmp_path), per_class=8,
                           settings=("both",), alphas=(0.5,), students=1, teacher_width=64,
                           student_widths=(32,), epochs=5, teachers=1)
    assert len(table) == 1 and table["images"].iloc[0] == "cifar10" and table["note"].iloc[0] == ""
    assert table["n_memorized"].iloc[0] == 80 and table["n_trivial"].iloc[0] == 20
