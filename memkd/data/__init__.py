"""Data sources, each a module (nothing here trains):

random_vectors  the memorization datasets D and D' (random inputs, balanced random labels) and per-class splits
images          CIFAR-10 (downloaded, checked, cached) and scikit-learn's 8x8 digits, with pixel shuffles
tokens          modular addition (a + b) mod k as token pairs, and its per-answer memorized sets
linear          the published version's Gaussian data for linear teachers, the students' parts and shuffles
triples         random "facts" for a language model: triples of numbers with random labels, and their tokens
"""
