"""Model families: ensembles of E independent networks trained in one batched pass, each a module.

mlp          `EnsembleMLP`: fully connected, L hidden layers (the paper's teachers and students)
linear       bias-free linear teachers and their students (least squares, soft labels, exact solve)
cnn          `EnsembleCNN` and `CNNFamily`: convolutional teachers and students
transformer  `EnsembleTransformer` and `TransformerFamily`: Nanda et al.'s one-layer transformer
gpt2         `EnsembleGPT2`: GPT-2 sequence classifiers, and `load_checkpoint` (transformers, optional)
family       the `Family` protocol every family implements for `memkd.distillation`, its optimizer,
             and `MLPFamily` (k hidden layers; k = 0 is the bias-free linear model)
"""
