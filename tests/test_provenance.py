"""Provenance (memkd.provenance, meta.json) and the device errors (memkd.device)."""

from __future__ import annotations

import json
import platform
import subprocess
import shutil
from pathlib import Path

import pytest
import torch

import memkd
from memkd import provenance
from memkd.book.chapter import Chapter
from memkd.device import available_devices, resolve_device

KEYS = {
    "memkd_version",
    "git_commit",
    "git_clean",
    "python",
    "torch",
    "device",
    "device_name",
    "threads",
    "platform",
    "hostname",
}


def test_collect_has_every_field_and_is_json():
    info = provenance.collect("cpu")
    assert set(info) == KEYS
    assert json.loads(json.dumps(info)) == info
    assert info["memkd_version"] == memkd.__version__
    assert info["python"] == platform.python_version()
    assert info["torch"] == torch.__version__
    assert info["device"] == "cpu"
    assert isinstance(info["device_name"], str) and info["device_name"]
    assert info["threads"] == torch.get_num_threads()
    assert info["git_clean"] in (True, False, None)


def test_collect_auto_records_the_device_memkd_picks():
    assert provenance.collect(None)["device"] == str(resolve_device("auto"))
    assert provenance.collect(torch.device("cpu"))["device"] == "cpu"


def test_collect_records_a_missing_device_as_given():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    info = provenance.collect("cuda:0")
    assert info["device"] == "cuda:0" and info["device_name"] is None


def test_device_names():
    assert provenance.device_name(torch.device("mps")) == "Apple MPS"
    assert provenance.device_name(torch.device("cpu"))


def _make_repo(tmp_path, packed: bool):
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    sha = "0123456789abcdef0123456789abcdef01234567"
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    if packed:
        (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/main\n")
    else:
        (git / "refs" / "heads" / "main").write_text(sha + "\n")
    (tmp_path / "repo" / "sub" / "deeper").mkdir(parents=True)
    return git, sha


@pytest.mark.parametrize("packed", [False, True])
def test_git_commit_is_read_without_git(tmp_path, packed):
    git, sha = _make_repo(tmp_path, packed)
    found = provenance.find_git_dir(tmp_path / "repo" / "sub" / "deeper")
    assert found == git.resolve()
    assert provenance.git_commit(found) == sha


def test_git_commit_detached_head_and_gitdir_file(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    sha = "fedcba9876543210fedcba9876543210fedcba98"
    (real / "HEAD").write_text(sha + "\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".git").write_text(f"gitdir: {real}\n")
    assert provenance.git_commit(provenance.find_git_dir(work)) == sha


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert provenance.find_git_dir(tmp_path) is None  # pytest's tmp folders are outside any checkout
    assert provenance.git_commit(None) is None
    assert provenance.git_clean(None) is None
    # A broken HEAD is not a crash.
    broken = tmp_path / "b" / ".git"
    broken.mkdir(parents=True)
    (broken / "HEAD").write_text("ref: refs/heads/nowhere\n")
    assert provenance.git_commit(broken) is None


def test_commit_matches_git_when_in_a_checkout():
    info = provenance.collect("cpu")
    if info["git_commit"] is None or shutil.which("git") is None:
        pytest.skip("not a git checkout, or no git binary")
    checkout = Path(memkd.__file__).resolve().parents[1]  # the work tree (in a git worktree, not the main one's)
    head = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert info["git_commit"] == head


def test_git_clean_sees_a_modified_tracked_file(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("no git binary")
    repo = tmp_path / "r"
    repo.mkdir()
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run(["git", "-C", str(repo), "add", "f.txt"], check=True)
    subprocess.run(["git", *env, "-C", str(repo), "commit", "-q", "-m", "x"], check=True)
    (repo / "untracked.txt").write_text("outputs do not count")
    assert provenance.git_clean(repo) is True
    (repo / "f.txt").write_text("b")
    assert provenance.git_clean(repo) is False


def test_chapter_meta_json_carries_provenance(tmp_path):
    ch = Chapter("99_test", profile="smoke", results_dir=str(tmp_path / "out"), device="cpu", seed=7)
    ch.finish()
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert KEYS <= set(meta)
    assert meta["chapter"] == "99_test" and meta["profile"] == "smoke" and meta["seed"] == 7
    assert meta["device"] == "cpu" and meta["elapsed_s"] >= 0
    assert meta["memkd_version"] == memkd.__version__


# ---- device errors -----------------------------------------------------------------------


def test_available_devices_always_lists_cpu():
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "mps", torch.device("cuda")])
def test_missing_accelerator_is_a_clear_value_error(asked, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError) as err:
        resolve_device(asked)
    text = str(err.value)
    assert "'device'" in text and str(torch.device(asked)) in text and "Available devices: cpu" in text


def test_cuda_index_beyond_the_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"cpu, cuda:0, cuda:1.*Got 'cuda:2' instead"):
        resolve_device("cuda:2")


def test_mps_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")
    assert available_devices() == ["cpu", "mps"]


def test_chapter_with_a_missing_device_names_the_knob(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'device'"):
        Chapter("99_test", profile="smoke", results_dir=str(tmp_path), device="cuda")
