"""memkd: knowledge distillation of memorized random data (a reproduction of Behrens, 2025).

Three floors: the core (this folder: data, models, linear, losses, train, distillation, fused, metrics, config, seeds,
memory, device, provenance), `memkd.experiments` (one function per figure or question, and the
domain pieces only they use), and `memkd.book` (chapters, plots, the build and the report);
`memkd.sweep` and `memkd.cli` run notebooks over grids. Each module's docstring says what it owns.

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
