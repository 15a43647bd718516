"""Foveal: attention-based image classification you can train, measure, explain and ship.

import foveal
result = foveal.train(data="digits", epochs=5)
classifier = foveal.load(result.run_dir)
classifier.predict(["seven.png"])
"""

from __future__ import annotations

from typing import Any

from foveal.errors import FovealError

__version__ = "0.1.0"

# Every entry point that needs torch loads on first use, so that `import foveal` (and with it every
# `foveal` command, `foveal models` included) starts without paying torch's second or more of import.
_LAZY = {
    "ModelConfig": ("foveal.models", "ModelConfig"),
    "create_model": ("foveal.models", "create_model"),
    "list_models": ("foveal.models", "list_models"),
    "train": ("foveal.api", "train"),
    "TrainConfig": ("foveal.training", "TrainConfig"),
    "load": ("foveal.api", "load"),
    "Classifier": ("foveal.api", "Classifier"),
    "evaluate": ("foveal.api", "evaluate"),
    "explain": ("foveal.api", "explain"),
    "report": ("foveal.api", "report"),
    "export": ("foveal.api", "export"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'foveal' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's own names and the lazy entry points, which `__getattr__` alone hides from dir(),
    tab completion and help()."""
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Classifier",
    "FovealError",
    "ModelConfig",
    "TrainConfig",
    "create_model",
    "evaluate",
    "explain",
    "export",
    "list_models",
    "load",
    "report",
    "train",
    "__version__",
]
