"""derive_seed (every seed of an experiment) and the chunk planner (how many members train at once)."""

from __future__ import annotations

import pytest

import memkd.device_memory as memory
from memkd.seeds import ROLES, derive_seed, member_seeds


def test_derive_seed_is_stable_across_processes_and_versions():
    # a regression value: a changed derivation would silently change every number in the book
    assert derive_seed(0, "teacher", 3) == derive_seed(0, "teacher", 3)
    assert derive_seed(0, "teacher", 3) == 4239280377043339478
    assert 0 <= derive_seed(123, "student", 1, 0.5, "soft", 2) < 2**63


def test_derive_seed_separates_roles_keys_and_bases():
    seeds = {derive_seed(b, r, k) for b in (0, 1) for r in ROLES for k in range(20)}
    assert len(seeds) == 2 * len(ROLES) * 20
    # a float knob and the integer next to it, and keys in another order, are different objects
    assert derive_seed(0, "student", 1.0) != derive_seed(0, "student", 1)
    assert derive_seed(0, "student", 1, 2) != derive_seed(0, "student", 2, 1)


def test_derive_seed_refuses_an_unknown_role():
    with pytest.raises(ValueError, match="'role' parameter of derive_seed"):
        derive_seed(0, "teachers", 0)


def test_member_seeds_are_the_seeds_of_each_member_alone():
    seeds = member_seeds(7, "student", [(0, "a"), (1, "b")], 3)
    assert seeds == [derive_seed(7, "student", p, q, i) for p, q in [(0, "a"), (1, "b")] for i in range(3)]


@pytest.mark.parametrize(
    "free, per_member, members, expected",
    [
        (10_000, 100, 50, 50),  # all fit: one chunk
        (10_000, 100, 500, 80),  # 80% of 10,000 bytes / 100 bytes
        (10_000, 7_999, 5, 1),  # one fits
    ],
)
def test_members_per_chunk_uses_the_headroom(monkeypatch, free, per_member, members, expected):
    monkeypatch.setattr(memory, "free_bytes", lambda device: free)
    assert memory.members_per_chunk(members, per_member, "cpu") == expected


def test_members_per_chunk_refuses_a_member_that_cannot_fit(monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10_000)
    with pytest.raises(MemoryError, match="student_widths"):
        memory.members_per_chunk(4, 8_001, "cpu", knobs="student_widths")
