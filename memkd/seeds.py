"""Every random seed of an experiment, derived from its base seed in one place.

A seed is named by a role and the indices that identify one object of that role::

    derive_seed(base, "data", dataset)                 # the memorized dataset D
    derive_seed(base, "independent", dataset)          # its fresh twin D'
    derive_seed(base, "teacher", dataset)              # the teacher's initialization
    derive_seed(base, "split", dataset)                # the per-class alpha split
    derive_seed(base, "student", dataset, *setting, i) # student i of a setting on that dataset

Because a student's seed depends on its own indices only, and not on which ensemble it is trained
in, a student trained in one ensemble with every dataset of an experiment starts from the same
weights as the same student trained alone: stacking datasets changes the speed, not the numbers.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from memkd.config import invalid

ROLES = ("data", "independent", "teacher", "split", "student", "order", "shuffle", "probe")


def _word(key: object) -> int:
    """A stable 32-bit integer for an index, a float knob or a name (Python's hash() is salted)."""
    if isinstance(key, (bool, np.bool_)):
        return int(key)
    if isinstance(key, (int, np.integer)) and 0 <= int(key) < 2**32:
        return int(key)
    return zlib.crc32(repr(key).encode())


def derive_seed(base: int, role: str, *keys: object) -> int:
    """A 63-bit seed for `role` and `keys`, independent across roles and keys (numpy SeedSequence).

    >>> derive_seed(0, "teacher", 3) == derive_seed(0, "teacher", 3)
    True
    """
    if role not in ROLES:
        raise invalid("role", "derive_seed", f"one of {ROLES}", role)
    entropy = [_word(base), zlib.crc32(role.encode())] + [_word(k) for k in keys]
    low, high = (int(w) for w in np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32))
    return ((high << 32) | low) >> 1


def member_seeds(base: int, role: str, prefixes: Sequence[tuple], members: int) -> list[int]:
    """Seeds for `members` members under each prefix, in order: prefixes x range(members)."""
    return [derive_seed(base, role, *prefix, i) for prefix in prefixes for i in range(members)]
