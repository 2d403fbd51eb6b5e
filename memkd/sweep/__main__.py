"""`python -m memkd.sweep`: the child process of `memkd.sweep.executors.in_child` (one task)."""

from memkd.sweep.executors import child_main

child_main()
