"""Evaluation and inference: metrics, the paper's test protocols, checkpoints as predictors,
data-set evaluation and its reports."""
