"""GPT-2 and random facts (chapter 15): triples and their tokens, EnsembleGPT2 against transformers, the
checkpoint loader on a GPT-2 saved to disk here (never the network), per-member clipping, the experiment."""

import math
import time
from dataclasses import fields

import pandas as pd
import pytest
import torch

from memkd.config import make_config
from memkd.data.triples import DIGIT_PAD, digit_tokens, gpt2_tokens, number_tokens, random_triples
from memkd.experiments.language_model import LanguageModelConfig, language_model
from memkd.models.gpt2 import EnsembleGPT2, GPT2Shape, hf_shape, load_checkpoint
from memkd.train import clip_member_gradients

from conftest import ROOT, execute_chapter_at_smoke

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------- data


def test_triples_are_in_range_and_balanced_when_asked():
    t, y = random_triples(60, 1000, 6, seed=3, balanced=True)
    assert t.shape == (60, 3) and int(t.min()) >= 1 and int(t.max()) <= 1000
    assert torch.bincount(y, minlength=6).tolist() == [10] * 6
    t2, y2 = random_triples(60, 1000, 6, seed=3, balanced=True)
    assert torch.equal(t, t2) and torch.equal(y, y2)
    with pytest.raises(ValueError, match="'count' parameter of random_triples"):
        random_triples(61, 1000, 6, seed=0, balanced=True)


def test_digit_tokens_left_pad_and_end_with_the_last_digit():
    tok, mask = digit_tokens(torch.tensor([[7, 45, 999], [100, 100, 100]]), high=999)
    assert tok.shape == (2, 11)
    assert tok[0].tolist() == [DIGIT_PAD] * 3 + [7, 10, 4, 5, 10, 9, 9, 9]
    assert tok[1].tolist() == [1, 0, 0, 10, 1, 0, 0, 10, 1, 0, 0]
    assert mask.sum(1).tolist() == [8, 11]
    one, ones = number_tokens(torch.tensor([[7, 45, 999]]))
    assert one.tolist() == [[7, 45, 999]] and bool(ones.all())


# ---------------------------------------------------------------------------- a GPT-2 saved here


def _byte_level_alphabet():
    """GPT-2's byte-level alphabet: the printable character that stands for each of the 256 bytes."""
    kept = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    shifted, extra = [], 0
    for b in range(256):
        if b in kept:
            shifted.append(chr(b))
        else:
            shifted.append(chr(256 + extra))
            extra += 1
    return shifted


def _byte_vocab_tokenizer(folder):
    """A GPT2Tokenizer with one token per byte and <|endoftext|> (no merges), from files in `folder`
    (vocab.json and merges.txt, the files of the hub's `gpt2`)."""
    import json

    from transformers import GPT2Tokenizer

    vocab = {ch: i for i, ch in enumerate(_byte_level_alphabet())}
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return GPT2Tokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def saved_gpt2(tmp_path_factory):
    """A tiny GPT-2 language model and its tokenizer, saved with save_pretrained to a temporary folder:
    the format of the hub's `gpt2` (a GPT2LMHeadModel: the classifier's head is new when loaded)."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = _byte_vocab_tokenizer(folder / "vocab")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=16,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder / "model"


def test_ensemble_member_equals_the_transformers_model(saved_gpt2):
    model, tokenizer = load_checkpoint(str(saved_gpt2), classes=7)
    model.eval()
    ens = EnsembleGPT2(3, hf_shape(model, 10), seed=5).eval()
    ens.load_hf(1, model)
    tokens, mask = gpt2_tokens(torch.tensor([[1, 2, 3], [234, 300, 3], [1000, 999, 12]]), tokenizer, max_length=10)
    assert not bool(mask[:2, 0].any()) and bool(mask[:, -1].all())  # left padding: the last token is real
    ref = model(input_ids=tokens, attention_mask=mask.long()).logits
    out = ens(tokens, mask)
    assert out.shape == (3, 3, 7)
    assert torch.allclose(out[1], ref, atol=1e-5), (out[1] - ref).abs().max()
    assert not torch.allclose(out[0], ref, atol=1e-3)  # the other members keep their own draws


def test_checkpoint_loads_from_a_local_folder_with_pad_eos_and_left_padding(saved_gpt2):
    model, tokenizer = load_checkpoint(str(saved_gpt2), classes=11)
    assert model.config.num_labels == 11 and model.score.weight.shape == (11, 32)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == tokenizer.eos_token
    assert model.config.pad_token_id == tokenizer.eos_token_id


def test_an_unreachable_checkpoint_fails_fast_naming_the_knob(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never the network in tests
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"The 'checkpoint' parameter of language_model must be .*save_pretrained"):
        language_model("paper", checkpoint="gpt2", teachers=2)
    assert time.perf_counter() - started < 30
    with pytest.raises(ValueError, match=r"The 'checkpoint' parameter of load_checkpoint .*folder could not be read"):
        load_checkpoint(str(tmp_path), classes=3)  # an empty folder


def test_the_paper_path_runs_on_the_saved_checkpoint(saved_gpt2):
    table = language_model(
        "paper",
        checkpoint=str(saved_gpt2),
        cells=["gpt2/50"],
        triples=40,
        classes=4,
        fresh=20,
        teacher_epochs=2,
        epochs=2,
        rhos=[0.5],
        teachers=2,
        teacher_min_acc=0.0,
        max_length=10,
    )
    assert set(table.student_start) == {"teacher_body", "independent"} and set(table.tokenization) == {"gpt2"}
    assert (table.width == 32).all() and (table.layers == 2).all() and len(table) == 4
    assert table.test_acc.between(0, 1).all() and table.leak.notna().all()


# ---------------------------------------------------------------------------- training pieces


def test_member_clipping_equals_torch_clip_grad_norm_member_by_member():
    torch.manual_seed(0)
    a, b = torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 7, requires_grad=True)
    (a.pow(3).sum() + (b * torch.tensor([[0.01], [1.0], [10.0]])).sum()).backward()
    grads = [a.grad.clone(), b.grad.clone()]
    norms = clip_member_gradients([a, b], 1.0)
    for e in range(3):
        ga, gb = grads[0][e].clone().requires_grad_(), grads[1][e].clone().requires_grad_()
        x, y = torch.zeros_like(ga, requires_grad=True), torch.zeros_like(gb, requires_grad=True)
        x.grad, y.grad = ga.detach().clone(), gb.detach().clone()
        total = torch.nn.utils.clip_grad_norm_([x, y], 1.0)
        assert math.isclose(float(total), float(norms[e]), rel_tol=1e-5)
        assert torch.allclose(x.grad, a.grad[e]) and torch.allclose(y.grad, b.grad[e])


def test_members_with_different_data_train_independently():
    """Member 0 trained alone equals member 0 trained beside another (same seed, same batches)."""
    from memkd.experiments.language_model import train_members

    shape = GPT2Shape(vocab=20, positions=4, width=16, layers=1, heads=2, classes=3, dropout=0.0)
    tokens = torch.randint(0, 20, (2, 24, 4), generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 3, (2, 24), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    pair, alone = EnsembleGPT2(2, shape, [11, 12]), EnsembleGPT2(1, shape, [11])
    kw = dict(soft=False, lr=1e-2, epochs=3, batch_size=8, seed=0, max_grad_norm=1.0, progress=False, desc="")
    train_members(pair, tokens, mask, labels, **kw)
    train_members(alone, tokens[:1], mask[:1], labels[:1], **kw)
    assert torch.allclose(pair(tokens[0])[0], alone(tokens[0])[0], atol=1e-5)


# ---------------------------------------------------------------------------- the experiment


@pytest.mark.parametrize(
    "knobs, name",
    [
        (dict(cells=["gpt2/1000"]), "cells"),  # no checkpoint to take a tokenizer from
        (dict(cells=["words/99"]), "cells"),
        (dict(cells=["number/1"]), "cells"),
        (dict(cells=["number"]), "cells"),
        (dict(student_starts=["pretrained_elsewhere"]), "student_starts"),
        (dict(student_start_cells=["number/7"]), "student_start_cells"),  # not one of the cells
        (dict(widths=[30], heads=4), "heads"),
        (dict(triples=61), "triples"),
        (dict(rhos=[0.001]), "rhos"),
        (dict(teachers=1), "teachers"),
        (dict(teacher_min_acc=1.5), "teacher_min_acc"),
    ],
)
def test_bad_knobs_are_refused_before_any_work(knobs, name):
    with pytest.raises(ValueError, match=rf"The '{name}' parameter of language_model"):
        language_model("smoke", **knobs)


@pytest.mark.parametrize(
    "old, new", [("starts", "student_starts"), ("start_cells", "student_start_cells"), ("start", "student_starts")]
)
def test_the_old_names_of_the_student_start_are_refused_naming_the_new_ones(old, new):
    """One name per concept: the student's start is `student_start(s)` here as in the teacher clock."""
    with pytest.raises(ValueError, match=rf"^The '{old}' parameter of language_model was renamed: use '{new}'"):
        language_model("smoke", **{old: ["independent"]})
    assert "student_start" in LanguageModelConfig.TABLE_COLUMNS and "start" not in LanguageModelConfig.TABLE_COLUMNS


def test_the_old_name_of_the_batch_size_is_refused_naming_the_new_one():
    """One name per concept: the students' mini-batch size is `batch_size`, as in every experiment."""
    with pytest.raises(ValueError, match=r"^The 'batch' parameter of language_model was renamed: use 'batch_size'"):
        language_model("smoke", batch=8)
    assert make_config(LanguageModelConfig, "language_model", "smoke", {"batch_size": 8}).batch_size == 8
    assert "batch" not in {f.name for f in fields(LanguageModelConfig)}


@pytest.fixture(scope="module")
def smoke():
    torch.set_num_threads(1)
    return language_model("smoke")


def test_smoke_rows_cover_every_axis(smoke):
    cfg = LanguageModelConfig.PROFILE_VALUES["smoke"]
    assert set(smoke.cell) == set(cfg["cells"]) and set(smoke.student_start) == set(cfg["student_starts"])
    students = smoke[smoke.student >= 0]
    assert len(students) == cfg["teachers"] * len(cfg["student_starts"]) * len(cfg["cells"]) * len(cfg["rhos"])
    assert (students.leak - (students.test_acc - students.independent_acc)).abs().max() < 1e-6
    assert smoke.teacher_id.nunique() == cfg["teachers"]  # teachers are the data draws, paired across axes


def test_student_start_cells_limit_the_start_comparison_to_their_cells():
    table = language_model("smoke", student_start_cells=["number/50"], teacher_epochs=2, epochs=1)
    starts = table[table.student >= 0].groupby("cell").student_start.unique()
    assert set(starts["number/50"]) == {"teacher_start", "independent"} and list(starts["digits/50"]) == ["independent"]


def test_smoke_is_repeatable(smoke):
    again = language_model("smoke")
    cols = ["train_acc", "test_acc", "independent_acc", "agreement_fresh", "teacher_train_acc"]
    pd.testing.assert_frame_equal(smoke[cols].reset_index(drop=True), again[cols].reset_index(drop=True))


def test_a_teacher_start_student_starts_from_the_teachers_initial_weights():
    """A teacher_start member copied from the teachers' initial weights computes what the untrained
    teacher computes; a member of its own draw does not."""
    shape = GPT2Shape(vocab=51, positions=3, width=16, layers=1, heads=2, classes=6, dropout=0.0)
    teacher_init = EnsembleGPT2(2, shape, [7, 8])
    student = EnsembleGPT2(2, shape, [1, 2])
    student.copy_member(0, teacher_init, 1)
    tokens = torch.randint(1, 51, (10, 3))
    assert torch.equal(student(tokens)[0], teacher_init(tokens)[1])
    assert not torch.allclose(student(tokens)[1], teacher_init(tokens)[1])


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_profiles_validate(profile):
    from memkd.config import make_config

    cfg = make_config(LanguageModelConfig, "language_model", profile, {})
    assert cfg.teachers >= 4 and "independent" in cfg.student_starts
    if profile == "paper":
        assert (cfg.checkpoint, cfg.triples, cfg.classes, cfg.epochs, cfg.teacher_epochs) == (
            "gpt2",
            6000,
            1000,
            200,
            100,
        )
        assert cfg.rhos == (0.2, 0.5, 0.8) and "teacher_body" in cfg.student_starts
    else:
        assert set(cfg.tokenizations) == {"number", "digits"} and {"number/99", "digits/99"} <= set(cfg.cells)


def test_chapter_executes_at_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the smoke chapter never loads a checkpoint; if it did, never online
    results = execute_chapter_at_smoke(ROOT / "nbs" / "15_language_model.ipynb", tmp_path)
    claims = pd.read_csv(results / "claims.csv")
    names = set(claims["claim"])
    assert "leak_beats_fresh" in names and any(n.startswith("shared_start_leaks_more_") for n in names)
    assert any(n.startswith("digits_leak_more_") for n in names)
    assert set(claims.loc[claims.claim != "leak_beats_fresh", "beyond_paper"]) == {True}
    assert (results / "leak.png").exists()


def test_without_transformers_the_loader_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the lm extra were not installed
    with pytest.raises(ImportError, match=r"memkd\[lm\]"):
        load_checkpoint("gpt2", classes=3, owner="language_model")


def test_the_chapter_counts_in_the_published_versions_block():
    from memkd.book.report import published_version_chapters

    assert "15_language_model" in published_version_chapters(ROOT)
