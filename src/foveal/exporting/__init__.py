"""Shipping a model: self-describing bundles (config, weights, model card), ONNX with its parity and
an MLflow pyfunc model holding the bundle; `foveal bench` times it on every backend.

Import the modules themselves (`foveal.exporting.bundle`, `.to_onnx`, `.bench`): this package
re-exports nothing, so that `foveal.exporting.settings`, which the command line reads at start-up,
does not pull in torch.
"""
