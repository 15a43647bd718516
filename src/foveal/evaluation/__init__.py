"""Measuring a trained classifier: top-1/top-k, per-class precision/recall/F1, confusion matrix, plots.

Import the modules themselves (`foveal.evaluation.metrics`, `.plots`, `.workflow`): this package
re-exports nothing, so that `foveal.evaluation.settings`, which the command line reads at start-up,
does not pull in torch.
"""
