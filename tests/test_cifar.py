"""memkd.experiments.cifar: Fig 4's shuffles experiment on digits and on a tiny CIFAR-10 folder.
The image data itself (reader, checksums, shuffles): tests/test_data.py."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from memkd.data import images

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


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
    table = cifar_shuffles(
        "smoke",
        dataset="cifar10",
        data_root=str(tmp_path),
        images_per_class=8,
        settings=("both",),
        alphas=(0.5,),
        students=1,
        teacher_width=64,
        student_widths=(32,),
        epochs=5,
        teachers=1,
    )
    assert len(table) == 1 and table["images"].iloc[0] == "cifar10" and table["note"].iloc[0] == ""
    assert table["n_memorized"].iloc[0] == 80 and table["n_trivial"].iloc[0] == 20
