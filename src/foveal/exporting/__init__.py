"""Shipping a model: self-describing bundles (config, weights, model card) and ONNX with its parity.

The names below are imported when first used: `foveal.exporting.settings`, which the command line
reads at start-up, must not pull in torch with them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUNDLE_FORMAT", "add_to_bundle_config", "write_bundle"]


def __getattr__(name: str) -> Any:
    if name in ("add_to_bundle_config", "write_bundle"):
        from foveal.exporting import bundle

        return getattr(bundle, name)
    if name == "BUNDLE_FORMAT":
        from foveal.exporting.facts import BUNDLE_FORMAT

        return BUNDLE_FORMAT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
