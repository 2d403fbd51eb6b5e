"""memkd: knowledge distillation of memorized random data (a reproduction of Behrens, 2025).

Five floors: the core (this folder: the sub-packages `memkd.data` (random vectors, images, tokens) and
`memkd.models` (MLP, linear, CNN, transformer, each a family), and losses, train, fused, distillation, defences, audits, memorization,
students, declare, metrics, evaluation, tables, config, seeds, device_memory, device, provenance, threads), `memkd.experiments` (one function per
figure or question), and `memkd.book` (chapters, departures, grid statistics, plots, the build and the report);
`memkd.sweep` and `memkd.cli` run notebooks over grids. Each module's docstring says what it owns.

Statistics: `memkd.summarize(table, value="test_acc", by=["alpha"])` gives mean +- SEM over
teachers (students averaged within their teacher first) with n, for any experiment's table or a
sweep's results (`memkd.tables.summarize`). `help(memkd.experiments.<name>)` lists an
experiment's knobs with their defaults in each profile, and its table's columns.

Shape letters, the same in every module's docstrings and comments:
    E    ensemble members (independent networks trained in one batched pass)
    K    teachers, one per dataset D (the unit of replication)
    M    students per teacher and setting (E = K * M when students of all teachers train together)
    N    samples of D (N' of the fresh dataset D', N_tr / N_te the student's and the held-out part)
    D    input dimension; P hidden width; L hidden layers; C classes (or output dimension)
    Q    embedding width of similarity students (their C outputs), reference and query counts
    F    parameters of one member, flat (the fused step's (E, F) buffers)
    T    softmax temperature
Images: c channels, h x w pixels, D = c * h * w. Tokens (the transformer): S positions,
V vocabulary, Dm d_model, H heads, Dh d_head, Dmlp d_mlp.
"""

__version__ = "0.1.0"

# Idle OpenMP threads sleep instead of spinning (set before torch loads; see memkd.threads).
from memkd.threads import set_wait_policy as _set_wait_policy  # noqa: E402

_set_wait_policy()


def __getattr__(name: str):
    """`memkd.summarize` and `memkd.audit`, imported on first use (so that `import memkd` stays light)."""
    if name == "summarize":
        from memkd.tables import summarize

        return summarize
    if name == "audit":
        from memkd.audits import audit

        return audit
    raise AttributeError(f"module 'memkd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "summarize", "audit"])


__all__ = ["audit", "summarize", "__version__"]
