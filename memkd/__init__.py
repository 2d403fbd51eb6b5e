"""memkd: knowledge distillation of memorized random data (a reproduction of Behrens, 2025).

Shape letters used across the library:
    E  ensemble members (independent networks trained in one batched pass)
    N  samples, D input dimension, P hidden width, C classes
"""

__version__ = "0.1.0"
