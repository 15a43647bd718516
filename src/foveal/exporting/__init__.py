"""Shipping a model: self-describing bundles (config, weights, model card) and ONNX with its parity."""

from foveal.exporting.bundle import add_to_bundle_config, write_bundle
from foveal.exporting.facts import BUNDLE_FORMAT

__all__ = ["BUNDLE_FORMAT", "add_to_bundle_config", "write_bundle"]
