"""`python -m memkd.sweep`: the child process of `memkd.sweep.executors.in_child` (one task)."""

from memkd.sweep.executors import _child_main

_child_main()
